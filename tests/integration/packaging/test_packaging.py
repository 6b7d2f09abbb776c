"""The wheel installs one top-level name, ``lintas``, and nothing generic."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lintas.audit
import lintas.contracts
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(REPO),
        ],
        check=True,
        cwd=out,
    )
    (found,) = out.glob("lintas-*.whl")
    return found


def test_wheel_installs_only_the_lintas_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"lintas", wheel.name.split("-py3")[0] + ".dist-info"}


def test_wheel_maps_each_folder_under_lintas(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("contracts", "producers", "consumers", "infra", "cli", "demo", "audit"):
        assert f"lintas/{package}/__init__.py" in names, package
        assert f"lintas/{package}/py.typed" in names or package in ("cli", "demo"), package
    assert "lintas/contracts/families/case.py" in names
    assert "lintas/contracts/schemas/case.opened/v2.json" in names
    assert "lintas/contracts/schemas/envelope.json" in names
    assert "lintas/contracts/schemas/published.json" in names
    assert not any(name.startswith("lintas/tests") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lintas = lintas.cli:main" in text


def test_the_installed_package_is_this_checkout() -> None:
    assert Path(lintas.contracts.__file__).resolve().parent == REPO / "contracts"
    assert Path(lintas.audit.__file__).resolve().parent == REPO / "audit"
