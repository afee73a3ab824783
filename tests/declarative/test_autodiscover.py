"""``autodiscover`` imports task modules recursively, in order, and never half-way."""

from __future__ import annotations

import importlib
import sys

import pytest

from quiv import InvalidArgumentError, Quiv, QuivError
from quiv._declare.discovery import DiscoveryError
from quiv._declare.registry import TaskRegistry

from .conftest import WritePackage

REGISTRY = """
from quiv._declare.registry import TaskRegistry
registry = TaskRegistry()
imported = []
"""


def _task_module(name: str, interval: int = 60) -> str:
    return f"""
from app.registry import registry, imported
imported.append(__name__)

@registry.task({interval}, delay=3600)
def {name}() -> None: ...
"""


def _registry() -> TaskRegistry:
    registry = importlib.import_module("app.registry").registry
    assert isinstance(registry, TaskRegistry)
    return registry


def _imported() -> list[str]:
    imported: list[str] = importlib.import_module("app.registry").imported
    return imported


@pytest.fixture
def app(write_package: WritePackage) -> None:
    write_package(
        {
            "app/__init__.py": "",
            "app/registry.py": REGISTRY,
            "app/tasks/__init__.py": "",
            "app/tasks/zeta.py": _task_module("zeta"),
            "app/tasks/alpha.py": _task_module("alpha"),
            "app/tasks/reports/__init__.py": "",
            "app/tasks/reports/weekly.py": _task_module("weekly"),
            "app/tasks/reports/_helpers.py": _task_module("helper"),
            "app/tasks/_private/__init__.py": "",
            "app/tasks/_private/hidden.py": _task_module("hidden"),
            "app/tasks/legacy/__init__.py": "",
            "app/tasks/legacy/old.py": _task_module("old"),
            "app/tasks/notes.txt": "not a module",
        }
    )


@pytest.mark.usefixtures("app")
def test_modules_are_imported_recursively_in_name_order(scheduler: Quiv) -> None:
    scheduler.include_registry(_registry())
    visited = scheduler.autodiscover("app.tasks")
    assert visited == [
        "app.tasks",
        "app.tasks.alpha",
        "app.tasks.legacy",
        "app.tasks.legacy.old",
        "app.tasks.reports",
        "app.tasks.reports.weekly",
        "app.tasks.zeta",
    ]
    assert _imported() == [
        "app.tasks.alpha",
        "app.tasks.legacy.old",
        "app.tasks.reports.weekly",
        "app.tasks.zeta",
    ]
    scheduler.start()
    assert [t.task_name for t in scheduler.get_all_tasks()] == ["alpha", "old", "weekly", "zeta"]


@pytest.mark.usefixtures("app")
def test_private_modules_are_skipped_unless_asked(scheduler: Quiv) -> None:
    visited = scheduler.autodiscover("app.tasks", include_private=True)
    assert "app.tasks._private.hidden" in visited
    assert "app.tasks.reports._helpers" in visited
    assert sorted(_imported()) == sorted(
        [
            "app.tasks.alpha",
            "app.tasks._private.hidden",
            "app.tasks.legacy.old",
            "app.tasks.reports._helpers",
            "app.tasks.reports.weekly",
            "app.tasks.zeta",
        ]
    )


@pytest.mark.usefixtures("app")
def test_exclude_takes_names_with_their_submodules_and_patterns(scheduler: Quiv) -> None:
    visited = scheduler.autodiscover("app.tasks", exclude=["app.tasks.legacy", "*.z*"])
    assert visited == ["app.tasks", "app.tasks.alpha", "app.tasks.reports", "app.tasks.reports.weekly"]


@pytest.mark.usefixtures("app")
def test_a_second_identical_call_does_nothing(scheduler: Quiv) -> None:
    first = scheduler.autodiscover("app.tasks")
    assert first
    assert scheduler.autodiscover("app.tasks") == []
    assert scheduler.autodiscover("app.tasks", exclude=["app.tasks.legacy"]) != []
    assert len(_imported()) == 4
    assert len(_registry().tasks) == 4


@pytest.mark.usefixtures("app")
def test_a_single_module_can_be_discovered(scheduler: Quiv) -> None:
    assert scheduler.autodiscover("app.tasks.alpha", "app.tasks.zeta") == [
        "app.tasks.alpha",
        "app.tasks.zeta",
    ]


@pytest.mark.usefixtures("app")
def test_a_missing_package_is_named(scheduler: Quiv) -> None:
    with pytest.raises(DiscoveryError, match=r"no module named 'app\.taskz'") as info:
        scheduler.autodiscover("app.taskz")
    assert info.value.name == "app.taskz"
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, QuivError)
    with pytest.raises(DiscoveryError, match=r"no module named 'nowhere\.tasks'"):
        scheduler.autodiscover("nowhere.tasks")


def test_a_failing_module_keeps_none_of_its_declarations(
    scheduler: Quiv, write_package: WritePackage
) -> None:
    root = write_package(
        {
            "app/__init__.py": "",
            "app/registry.py": REGISTRY,
            "app/tasks/__init__.py": "",
            "app/tasks/a_fine.py": _task_module("fine"),
            "app/tasks/b_broken.py": """
                from app.registry import registry
                import app.tasks.helpers.dep  # declares a task of its own, then stays imported

                @registry.task(60)
                def half_way() -> None: ...

                raise RuntimeError("boom")
            """,
            "app/tasks/helpers/__init__.py": "",
            "app/tasks/helpers/dep.py": _task_module("dep"),
        }
    )
    scheduler.include_registry(_registry())
    with pytest.raises(
        DiscoveryError, match=r"importing 'app\.tasks\.b_broken' failed with RuntimeError: boom"
    ) as info:
        scheduler.autodiscover("app.tasks")
    assert info.value.name == "app.tasks.b_broken"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [spec.name for spec in _registry().tasks] == ["fine"]
    assert "app.tasks.helpers.dep" not in sys.modules
    assert "app.tasks.b_broken" not in sys.modules

    (root / "app/tasks/b_broken.py").write_text(
        "from app.registry import registry\nimport app.tasks.helpers.dep\n\n"
        "@registry.task(60, delay=3600)\ndef half_way() -> None: ...\n"
    )
    importlib.invalidate_caches()
    visited = scheduler.autodiscover("app.tasks")
    assert "app.tasks.b_broken" in visited
    assert sorted(spec.name for spec in _registry().tasks) == ["dep", "fine", "half_way"]
    scheduler.start()
    assert len(scheduler.get_all_tasks()) == 3


def test_a_missing_dependency_is_not_a_missing_package(scheduler: Quiv, write_package: WritePackage) -> None:
    write_package({"jobs/__init__.py": "", "jobs/mail.py": "import no_such_dependency_here\n"})
    with pytest.raises(
        DiscoveryError, match=r"importing 'jobs\.mail' failed with ModuleNotFoundError"
    ) as info:
        scheduler.autodiscover("jobs")
    assert info.value.name == "jobs.mail"


def test_a_module_failing_while_running_creates_nothing(scheduler: Quiv, write_package: WritePackage) -> None:
    write_package(
        {
            "app/__init__.py": "",
            "app/registry.py": REGISTRY,
            "app/tasks/__init__.py": "",
            "app/tasks/good.py": _task_module("good"),
            "app/tasks/zz_bad.py": _task_module("bad") + "\nraise ValueError('no')\n",
        }
    )
    scheduler.include_registry(_registry())
    scheduler.start()
    with pytest.raises(DiscoveryError):
        scheduler.autodiscover("app.tasks")
    assert [t.task_name for t in scheduler.get_all_tasks()] == ["good"]


def test_the_same_function_under_two_module_names_is_one_task(
    scheduler: Quiv, write_package: WritePackage
) -> None:
    root = write_package(
        {
            "app/__init__.py": "",
            "app/registry.py": REGISTRY,
            "app/tasks/__init__.py": "",
            "app/tasks/cleanup.py": _task_module("cleanup"),
        }
    )
    scheduler.include_registry(_registry())
    scheduler.autodiscover("app.tasks")
    sys.path.insert(0, str(root / "app"))  # the stray entry: app/tasks is now also top-level "tasks"
    try:
        importlib.invalidate_caches()
        stray = importlib.import_module("tasks.cleanup")
    finally:
        sys.path.remove(str(root / "app"))
        for name in [n for n in sys.modules if n == "tasks" or n.startswith("tasks.")]:
            del sys.modules[name]
    canonical = importlib.import_module("app.tasks.cleanup")
    assert stray.cleanup is not canonical.cleanup
    assert _imported() == ["app.tasks.cleanup", "tasks.cleanup"]
    scheduler.start()
    (task,) = scheduler.get_all_tasks()
    assert scheduler.task_id(stray.cleanup) == scheduler.task_id(canonical.cleanup) == task.id


@pytest.mark.parametrize(
    ("packages", "options", "message"),
    [
        ((), {}, "at least one package"),
        (("",), {}, "dotted package names"),
        (("app",), {"exclude": "app.x"}, "list of module names"),
        (("app",), {"exclude": [""]}, "non-empty str"),
        (("app",), {"include_private": "yes"}, "include_private must be a bool"),
    ],
)
def test_bad_arguments(
    scheduler: Quiv, packages: tuple[str, ...], options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        scheduler.autodiscover(*packages, **options)  # type: ignore[arg-type]
