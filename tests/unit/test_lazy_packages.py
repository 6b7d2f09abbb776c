"""Packages whose names are imported on first use keep their public surface, and spare a
replay worker what it does not need."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import lintas.audit
import lintas.consumers
from lintas.infra.lazy import lazy_exports


@pytest.mark.parametrize("package", [lintas.audit, lintas.consumers], ids=lambda p: p.__name__)
def test_every_exported_name_resolves_and_is_listed(package: ModuleType) -> None:
    assert set(package.__all__) <= set(dir(package))
    for name in package.__all__:
        assert getattr(package, name) is not None
        assert name in vars(package)  # bound now: later lookups are plain reads


def test_an_unknown_name_is_an_attribute_error_and_a_submodule_still_imports() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = lintas.consumers.nothing  # type: ignore[attr-defined]
    from lintas.consumers import deadlines  # not exported, yet a submodule

    assert deadlines.__name__ == "lintas.consumers.deadlines"


def test_a_name_is_bound_in_the_package_once_asked_for() -> None:
    module = ModuleType("lintas_lazy_probe")
    sys.modules[module.__name__] = module
    try:
        getattr_, dir_ = lazy_exports(module.__name__, {"path": ""})
        with pytest.raises(ModuleNotFoundError):
            getattr_("path")  # lintas_lazy_probe.path does not exist
        assert "path" in dir_()
        with pytest.raises(AttributeError):
            getattr_("other")
    finally:
        del sys.modules[module.__name__]


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_a_replay_worker_imports_neither_faststream_nor_the_cli() -> None:
    # What a worker process imports: the shard module (its functions are pickled by
    # reference) and, when spawned from the `lintas` script, the script's `lintas.cli`.
    loaded = _fresh(
        "import sys, lintas.cli, lintas.audit._shards; "
        "print(sorted(m for m in ('faststream', 'lintas.cli._main', 'lintas.audit.archive') "
        "if m in sys.modules))"
    )
    assert loaded == "[]"


def test_replay_names_the_function_even_after_its_module_was_imported() -> None:
    kind = _fresh(
        "import lintas.audit.replay as _, lintas.audit._shards; "
        "from lintas.audit import replay; print(type(replay).__name__)"
    )
    assert kind == "function"
