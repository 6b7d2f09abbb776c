"""The wheel installs one top-level name, ``lintas``, and nothing generic; it holds the
license, SPDX metadata and the generated documents `lintas contracts check` reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lintas.audit
import lintas.contracts
from tests.support.paths import REPO

# What a build leaves beside the sources, and what is not the project's to copy.
_NOT_COPIED = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".lintas",
    ".venv",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout: setuptools writes build/ and the
    egg-info beside the sources it builds, and the checkout must be left as it was."""
    before = sorted(p.name for p in REPO.iterdir())
    sources = tmp_path_factory.mktemp("sources") / "lintas"
    shutil.copytree(REPO, sources, ignore=_NOT_COPIED)
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
            str(sources),
        ],
        check=True,
        cwd=out,
    )
    assert sorted(p.name for p in REPO.iterdir()) == before, "the build wrote into the checkout"
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


def test_wheel_holds_the_license_and_spdx_metadata(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    info = wheel.name.split("-py3")[0] + ".dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "Apache License" in archive.read(f"{info}/licenses/LICENSE").decode()
    metadata = archive.read(f"{info}/METADATA").decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in metadata
    assert not [line for line in metadata if line.startswith("License:")]  # the old form


def test_wheel_holds_the_outbox_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lintas/producers/_schema.py" in names
    assert "lintas/producers/migrations/env.py" in names
    assert "lintas/producers/migrations/script.py.mako" in names
    assert "lintas/producers/migrations/versions/r0001_outbox.py" in names


def test_wheel_holds_the_generated_documents_the_cli_checks(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lintas/docs/asyncapi.json" in names
    assert "lintas/docs/AUTHORITY.md" in names


def test_an_installed_wheel_checks_contracts_and_migrates_the_outbox(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600
    )
    done = subprocess.run(
        [str(venv / "bin" / "lintas"), "contracts", "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # nowhere near the checkout: only what the wheel installed
        timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AsyncAPI current" in done.stdout
    version = subprocess.run(
        [str(venv / "bin" / "lintas"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("lintas ")
    # The outbox's migrations run from the installed package, not from this checkout.
    migrate = (
        "from lintas.infra.db import create_db_engine\n"
        "from lintas.producers import ensure_outbox_table\n"
        "from lintas.producers._schema import MIGRATIONS, revision\n"
        "engine = create_db_engine('sqlite:///agency.sqlite')\n"
        "ensure_outbox_table(engine)\n"
        "print(revision(engine), MIGRATIONS)\n"
    )
    migrated = subprocess.run(
        [str(python), "-c", migrate],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert migrated.returncode == 0, migrated.stderr
    head, location = migrated.stdout.split()
    assert head == "0002"
    assert Path(location).is_relative_to(venv)
