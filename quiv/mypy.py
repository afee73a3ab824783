"""mypy plugin: check the injected parameters of declared task handlers.

Enable it in the mypy configuration::

    [tool.mypy]
    plugins = ["quiv.mypy"]

Typing alone keeps ``@scheduler.task(...)`` functions callable with their own
signature and ``@scheduler.on(...)`` listeners in their event group. What it
cannot say is "if a handler declares ``_stop_event``, that parameter must
accept a ``threading.Event``". This plugin hooks the call of the decorator
object (``TaskDecorator.__call__``) and reports, with the error code
``quiv-injection``, a handler parameter named ``_job_id``, ``_stop_event`` or
``_progress_hook`` whose annotation does not accept what quiv passes (a
``str``, a ``threading.Event`` subclass, a ``quiv.types.ProgressHook``), or that quiv
cannot pass by keyword. ``X | None`` annotations are fine. Other type
checkers get the same check at run time, when the decorator is applied.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ErrorCode
from mypy.messages import format_type
from mypy.nodes import ARG_NAMED, ARG_NAMED_OPT, ARG_OPT, ARG_POS, MypyFile, TypeInfo
from mypy.options import Options
from mypy.plugin import CheckerPluginInterface, MethodContext, Plugin
from mypy.subtypes import is_subtype
from mypy.types import CallableType, Instance, Overloaded, Type, get_proper_type

__all__ = ["INJECTION", "QuivPlugin", "plugin"]

#: The error code of every report; silence one with ``# type: ignore[quiv-injection]``.
INJECTION = ErrorCode("quiv-injection", "Check handler parameters that quiv injects", "quiv")

_DECORATOR_CALL = "quiv._declare.decorators.TaskDecorator.__call__"
_DECORATOR_MODULE = "quiv._declare.decorators"

#: Injected name -> (module, class) of what quiv passes, and how to say it.
_INJECTED: dict[str, tuple[str, str, str]] = {
    "_job_id": ("builtins", "str", "the job id (a str)"),
    "_stop_event": ("quiv._core.stop", "StopEvent", "a threading.Event"),
    "_progress_hook": ("quiv.types", "ProgressHook", "a quiv.types.ProgressHook"),
}
_KEYWORD_KINDS = (ARG_POS, ARG_OPT, ARG_NAMED, ARG_NAMED_OPT)


def _instance(api: CheckerPluginInterface, module: str, name: str) -> Instance | None:
    modules: dict[str, MypyFile] = getattr(api, "modules", {})  # the checker has it; the interface does not
    tree = modules.get(module)
    symbol = tree.names.get(name) if tree is not None else None
    node = symbol.node if symbol is not None else None
    return Instance(node, []) if isinstance(node, TypeInfo) else None


def _handlers(func: Type) -> list[CallableType]:
    proper = get_proper_type(func)
    if isinstance(proper, CallableType):
        return [proper]
    if isinstance(proper, Overloaded):
        return list(proper.items)
    return []


def _check(handler: CallableType, ctx: MethodContext, options: Options) -> None:
    label = f'Task handler "{handler.name}"' if handler.name else "Task handler"
    for name, kind, declared in zip(handler.arg_names, handler.arg_kinds, handler.arg_types, strict=True):
        if name not in _INJECTED:
            continue
        module, class_name, described = _INJECTED[name]
        if kind not in _KEYWORD_KINDS:
            ctx.api.fail(
                f'{label} declares "{name}" as a variadic parameter; quiv passes it by keyword',
                ctx.context,
                code=INJECTION,
            )
            continue
        provided = _instance(ctx.api, module, class_name)
        if provided is None or is_subtype(provided, declared):
            continue
        ctx.api.fail(
            f'{label} annotates "{name}" as {format_type(declared, options)}, '
            f"which cannot accept {described} that quiv injects",
            ctx.context,
            code=INJECTION,
        )


def _check_task_decorator(ctx: MethodContext) -> Type:
    options = ctx.api.options
    for arg_types in ctx.arg_types[:1]:
        for arg_type in arg_types[:1]:
            for handler in _handlers(arg_type):
                _check(handler, ctx, options)
    return ctx.default_return_type


class QuivPlugin(Plugin):
    """Checks handlers given to ``@scheduler.task(...)`` / ``@registry.task(...)``."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _check_task_decorator if fullname == _DECORATOR_CALL else None

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        # What the checks compare against must be loaded wherever the decorator is.
        if file.fullname == _DECORATOR_MODULE:
            return [(10, "quiv._core.stop", -1), (10, "quiv.types", -1)]
        return []


def plugin(version: str) -> type[Plugin]:
    """Entry point mypy calls with its version."""
    return QuivPlugin
