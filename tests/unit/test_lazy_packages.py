"""Packages whose names are imported on first use keep their public surface, and spare a
replay worker what it does not need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import lintas.audit
import lintas.consumers
from lintas.infra.lazy import lazy_exports

PACKAGES = [lintas.audit, lintas.consumers]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_name_resolves_and_is_listed(package: ModuleType) -> None:
    assert set(package.__all__) <= set(dir(package))
    for name in package.__all__:
        assert getattr(package, name) is not None


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@pytest.mark.parametrize("package", ["lintas.audit", "lintas.consumers"])
def test_each_exported_name_is_bound_at_import_or_has_a_home(package: str) -> None:
    # (That the imports for type checkers name each of __all__ is mypy's to say.)
    unplaced = _fresh(
        f"import {package} as p; "
        "print(sorted(set(p.__all__) - set(vars(p)) - set(p._HOMES)), "
        "sorted(set(p._HOMES) - set(p.__all__)))"
    )
    assert unplaced == "[] []"


def test_an_unknown_name_is_an_attribute_error_and_a_submodule_still_imports() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = lintas.consumers.nothing  # type: ignore[attr-defined]
    from lintas.consumers import deadlines  # not exported, yet a submodule

    assert deadlines.__name__ == "lintas.consumers.deadlines"


def test_a_name_is_imported_when_first_asked_for_then_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "lazy_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "home.py").write_text("VALUE = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazy_probe

    try:
        getattr_, dir_ = lazy_exports("lazy_probe", {"VALUE": "home", "home": ""})
        assert "VALUE" in dir_()
        assert "lazy_probe.home" not in sys.modules
        value = getattr_("VALUE")
        assert value is sys.modules["lazy_probe.home"].VALUE
        assert vars(lazy_probe)["VALUE"] is value  # later lookups never come back here
        assert getattr_("home") is sys.modules["lazy_probe.home"]
        with pytest.raises(AttributeError, match="no attribute 'other'"):
            getattr_("other")
    finally:
        for name in ("lazy_probe.home", "lazy_probe"):
            sys.modules.pop(name, None)


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
