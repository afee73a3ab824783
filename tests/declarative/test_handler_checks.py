"""Handlers are checked when they are declared, and errors show their ``def`` line."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NewType, Optional, Protocol, Union

import pytest

from quiv import HandlerRegistrationError, Quiv
from quiv._declare.checks import check_task_handler, source_location
from quiv.types import ProgressHook

if TYPE_CHECKING:
    from decimal import Decimal  # only for a string annotation that cannot be resolved


class CallOnly(Protocol):
    def __call__(self, *args: Any, **kwargs: Any) -> None: ...


class HasName(Protocol):
    name: str


JobName = NewType("JobName", str)


def _raises(func: Callable[..., Any], **options: Any) -> HandlerRegistrationError:
    with pytest.raises(HandlerRegistrationError) as info:
        Quiv().task(10, **options)(func)
    return info.value


# -------------------------------------------------------------- annotations
def job_id_int(_job_id: int) -> None: ...
def job_id_event(_job_id: threading.Event | None = None) -> None: ...
def job_id_literal(_job_id: Optional[str] = None, *, _stop_event: bool = False) -> None: ...  # noqa: UP045


def job_id_newtype(_job_id: JobName | None = None) -> None: ...


def job_id_annotated_int(_job_id: Annotated[int, "the job"] = 0) -> None: ...
def stop_bool(_stop_event: bool = False) -> None: ...
def stop_str(*, _stop_event: str | int) -> None: ...
def stop_none(_stop_event: None = None) -> None: ...
def hook_int(_progress_hook: Callable[..., int] | None = None) -> None: ...
def hook_str(_progress_hook: str = "") -> None: ...
def hook_event(_progress_hook: threading.Event) -> None: ...
def hook_protocol(_progress_hook: HasName) -> None: ...
def hook_async(_progress_hook: Callable[..., Callable[[], None]]) -> None: ...


@pytest.mark.parametrize(
    ("func", "name", "shown"),
    [
        (job_id_int, "_job_id", "int"),
        (job_id_event, "_job_id", "threading.Event | None"),
        (job_id_newtype, "_job_id", "JobName"),
        (job_id_annotated_int, "_job_id", "Annotated[int, 'the job']"),
        (stop_bool, "_stop_event", "bool"),
        (stop_str, "_stop_event", "str | int"),
        (stop_none, "_stop_event", "None"),
        (hook_int, "_progress_hook", "Callable[..., int] | None"),
        (hook_str, "_progress_hook", "str"),
        (hook_event, "_progress_hook", "threading.Event"),
        (hook_protocol, "_progress_hook", "HasName"),
        (hook_async, "_progress_hook", "Callable[..., Callable[[], None]]"),
    ],
)
def test_an_injected_parameter_must_accept_what_quiv_passes(
    func: Callable[..., Any], name: str, shown: str
) -> None:
    error = _raises(func)
    message = str(error)
    assert f"annotates {name} as" in message
    assert shown in message
    location = source_location(func)
    assert location is not None
    assert f'File "{__file__}", line {location.lineno}, in {func.__qualname__}' in message
    assert message.rstrip().endswith(location.line)
    assert location.line.startswith(f"def {func.__name__}(")


def test_the_first_bad_injected_parameter_is_reported() -> None:
    assert "_stop_event" in str(_raises(job_id_literal))


def job_id_ok(_job_id: str) -> None: ...
def job_id_optional(_job_id: str | None = None) -> None: ...
def job_id_union(_job_id: Union[int, str] = 0) -> None: ...  # noqa: UP007
def job_id_any(_job_id: Any = None) -> None: ...
def job_id_object(_job_id: object = None) -> None: ...
def job_id_annotated(_job_id: Annotated[str, "the job"] = "") -> None: ...


def job_id_unannotated(_job_id=None):  # type: ignore[no-untyped-def]
    pass


def stop_ok(*, _stop_event: threading.Event) -> None: ...
def stop_optional(_stop_event: Optional[threading.Event] = None) -> None: ...  # noqa: UP045
def stop_unresolvable(_stop_event: Decimal | None = None) -> None: ...
def hook_protocol_ok(_progress_hook: ProgressHook | None = None) -> None: ...
def hook_callable(_progress_hook: Callable[..., None] | None = None) -> None: ...
def hook_callable_any(_progress_hook: Callable[[int, str], Any] | None = None) -> None: ...
def hook_bare_callable(_progress_hook: Callable | None = None) -> None: ...  # type: ignore[type-arg]
def hook_own_protocol(_progress_hook: CallOnly | None = None) -> None: ...
def everything(
    days: int,
    *,
    _job_id: str | None = None,
    _stop_event: threading.Event | None = None,
    _progress_hook: ProgressHook | None = None,
) -> None: ...
def with_var_keyword(**kwargs: Any) -> None: ...
async def async_handler(_stop_event: threading.Event | None = None) -> None: ...


@pytest.mark.parametrize(
    "func",
    [
        job_id_ok,
        job_id_optional,
        job_id_union,
        job_id_any,
        job_id_object,
        job_id_annotated,
        job_id_unannotated,
        stop_ok,
        stop_optional,
        stop_unresolvable,
        hook_protocol_ok,
        hook_callable,
        hook_callable_any,
        hook_bare_callable,
        hook_own_protocol,
        with_var_keyword,
        async_handler,
    ],
)
def test_annotations_that_accept_the_injected_value_pass(func: Callable[..., Any]) -> None:
    assert Quiv().task(10)(func) is func


# ----------------------------------------------------------------- kinds
def positional_only(_job_id: str, /) -> None: ...
def var_positional(*_stop_event: threading.Event) -> None: ...


@pytest.mark.parametrize("func", [positional_only, var_positional])
def test_an_injected_parameter_must_be_passable_by_keyword(func: Callable[..., Any]) -> None:
    message = str(_raises(func))
    assert "by keyword" in message
    location = source_location(func)
    assert location is not None
    assert message.endswith(location.line)


# ------------------------------------------------------------ args/kwargs
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "missing a required argument: 'days'"),
        ({"args": (1, 2)}, "too many positional arguments"),
        ({"kwargs": {"days": 1, "weeks": 2}}, "unexpected keyword argument 'weeks'"),
        ({"args": (1,), "kwargs": {"days": 2}}, "multiple values for argument 'days'"),
        ({"kwargs": {"days": 1, "_job_id": "mine"}}, "_job_id, which quiv injects"),
    ],
)
def test_declared_arguments_must_bind_to_the_handler(options: dict[str, Any], fragment: str) -> None:
    message = str(_raises(everything, **options))
    assert fragment in message
    assert "def everything(" in message


@pytest.mark.parametrize("options", [{"args": (1,)}, {"kwargs": {"days": 1}}])
def test_declared_arguments_that_bind_pass(options: dict[str, Any]) -> None:
    assert Quiv().task(10, **options)(everything) is everything


def test_injected_names_are_not_counted_as_positional_slots() -> None:
    def handler(_job_id: str, days: int) -> None: ...

    assert Quiv().task(10, args=(3,))(handler) is handler
    with pytest.raises(HandlerRegistrationError, match="too many positional"):
        Quiv().task(10, args=("job", 3))(handler)


def test_var_keyword_handlers_take_any_keyword_arguments() -> None:
    assert Quiv().task(10, kwargs={"anything": 1})(with_var_keyword) is with_var_keyword


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(HandlerRegistrationError, match="must be callable"):
        check_task_handler(42, None, None)


# ---------------------------------------------------------------- location
def _decorate(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def test_the_def_line_skips_decorators_and_follows_wrappers() -> None:
    @_decorate
    @_decorate
    def wrapped(_stop_event: bool) -> None: ...

    message = str(_raises(wrapped))
    assert message.endswith("def wrapped(_stop_event: bool) -> None: ...")
    location = source_location(wrapped)
    assert location is not None
    assert location.lineno == wrapped.__wrapped__.__wrapped__.__code__.co_firstlineno + 2  # type: ignore[attr-defined]


def test_partials_and_callable_objects_are_located() -> None:
    class Job:
        def __call__(self, day: int, _job_id: int = 0) -> None: ...

    partial = functools.partial(everything, 1)
    partial_location = source_location(partial)
    assert partial_location is not None
    assert partial_location.qualname == "everything"
    message = str(_raises(Job(), args=(1,), name="job"))
    assert "def __call__(self, day: int, _job_id: int = 0)" in message


def test_a_callable_without_a_name_needs_name() -> None:
    partial = functools.partial(everything, 1)
    with pytest.raises(HandlerRegistrationError, match="pass name="):
        Quiv().task(10)(partial)
    assert Quiv().task(10, name="partial")(partial) is partial


def test_builtins_without_a_signature_are_accepted() -> None:
    assert Quiv().task(10, args=("x",))(print) is print
    assert source_location(print) is None
