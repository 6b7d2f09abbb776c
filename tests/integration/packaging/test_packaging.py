"""The wheel installs one top-level name, ``lintas``, and nothing generic; it holds the
license, SPDX metadata and the generated documents `lintas contracts check` reads."""

from __future__ import annotations

import email
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _dependencies(wheel: Path) -> list[importlib.metadata.Distribution]:
    """What the wheel requires (its Requires-Dist, with the extras they name, markers
    evaluated), and what those require, down to the end: as this environment has them."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(name))
    todo = [(Requirement(line), "") for line in metadata.get_all("Requires-Dist") or []]
    extras: dict[str, set[str]] = {}
    found: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(requirement.name)
        wanted = {""} | requirement.extras
        if key in found and wanted <= extras[key]:
            continue
        new = wanted - extras.setdefault(key, set())
        extras[key] |= wanted
        found[key] = importlib.metadata.distribution(requirement.name)
        requires = [Requirement(line) for line in found[key].requires or []]
        todo += [(each, on) for each in requires for on in new]
    return list(found.values())


def _link_dependencies(wheel: Path, site: Path) -> None:
    """The wheel's dependencies, linked from this environment into ``site`` as if installed
    there (their dist-info included): a venv with them and nothing else of this environment,
    so an import the wheel does not declare fails there as it would after a fresh install.

    Each is linked by its folders that no other installed distribution has files in (one
    link for ``sqlalchemy/``; ``opentelemetry/``, which several share, folder by folder
    below it), and by its own files elsewhere. Files outside site-packages (dependencies'
    console scripts) are left out: the test runs lintas's own, which pip writes."""
    owners: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for dist in importlib.metadata.distributions():
        root, name = str(dist.locate_file("")), dist.name  # .name reads the metadata
        for file in dist.files or []:
            for depth in range(1, len(file.parts)):
                owners.setdefault((root, file.parts[:depth]), set()).add(name)
    linked: set[tuple[str, ...]] = set()
    for dist in _dependencies(wheel):
        root, name = str(dist.locate_file("")), dist.name
        for file in dist.files or []:
            if file.parts[0] == "..":
                continue
            own = (
                file.parts[:depth]
                for depth in range(1, len(file.parts))
                if owners[root, file.parts[:depth]] == {name}
            )
            parts = next(own, file.parts)
            if parts not in linked:
                linked.add(parts)
                target = site.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(root, *parts))


def test_an_installed_wheel_checks_contracts_and_migrates_the_outbox(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Its dependencies as this environment has them (not downloaded and unpacked again,
    # which took most of this test's time); pip installs the wheel into that venv (this
    # pip, run by the venv's python) and, with no index to fetch from, must find every
    # requirement the wheel declares satisfied there.
    _link_dependencies(wheel, Path(site))
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install"),
            *("--quiet", "--no-index", "--no-cache-dir", str(wheel)),
        ],
        check=True,
        timeout=600,
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
