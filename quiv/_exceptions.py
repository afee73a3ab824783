"""The errors quiv raises.

Every error derives from :class:`QuivError` and also from the builtin
exception it refines, so ``except LookupError`` keeps working for code that
does not know about quiv::

    QuivError
    ├── ConfigurationError (ValueError)
    │   ├── InvalidTimezoneError
    │   ├── InvalidArgumentError (TypeError)
    │   └── HandlerRegistrationError (TypeError)
    ├── DiscoveryError (ImportError)
    ├── AmbiguousTaskError (LookupError)
    ├── DatabaseInitializationError (RuntimeError)
    ├── DatabaseError (RuntimeError)
    ├── SchedulerStoppedError (RuntimeError)
    ├── TaskNotFoundError (LookupError)
    │   ├── HandlerNotRegisteredError
    │   ├── TaskNotScheduledError
    │   └── TaskNotMaterializedError
    └── JobNotFoundError (LookupError)
"""

from __future__ import annotations

__all__ = [
    "AmbiguousTaskError",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseInitializationError",
    "DiscoveryError",
    "HandlerNotRegisteredError",
    "HandlerRegistrationError",
    "InvalidArgumentError",
    "InvalidTimezoneError",
    "JobNotFoundError",
    "QuivError",
    "SchedulerStoppedError",
    "TaskNotFoundError",
    "TaskNotMaterializedError",
    "TaskNotScheduledError",
]


class QuivError(Exception):
    """Root of every error raised by quiv."""


class ConfigurationError(QuivError, ValueError):
    """A value given to quiv is not acceptable; nothing was changed."""


class InvalidTimezoneError(ConfigurationError):
    """The timezone is neither a ``tzinfo`` nor a known IANA name."""


class InvalidArgumentError(ConfigurationError, TypeError):
    """A parameter has the wrong type (for example ``args`` that is not a tuple)."""


class HandlerRegistrationError(ConfigurationError, TypeError):
    """A handler or callback cannot be registered as given."""


class DatabaseInitializationError(QuivError, RuntimeError):
    """The private SQLite database could not be created."""


class DatabaseError(QuivError, RuntimeError):
    """The private SQLite database failed while quiv was using it."""


class SchedulerStoppedError(QuivError, RuntimeError):
    """The scheduler has been shut down and cannot do this any more."""


class TaskNotFoundError(QuivError, LookupError):
    """No task has the given id."""


class HandlerNotRegisteredError(TaskNotFoundError):
    """No handler is registered under the given task id."""


class TaskNotScheduledError(TaskNotFoundError):
    """The task exists but is not scheduled to run again (a run-once task that already started)."""


class JobNotFoundError(QuivError, LookupError):
    """No job has the given id (it never existed or was purged by retention)."""


class TaskNotMaterializedError(TaskNotFoundError):
    """The function is declared as a task, but this scheduler has not created it yet (not started)."""


class AmbiguousTaskError(QuivError, LookupError):
    """The function is declared as several tasks; pass ``name=`` to say which."""


class DiscoveryError(QuivError, ImportError):
    """``autodiscover`` could not import a module; ``name`` is the module, ``__cause__`` the error."""
