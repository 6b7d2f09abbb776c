"""JSON Schemas of the contracts, the lock of published versions, and the contracts check.

Layout under ``contracts/schemas/`` (shipped in the wheel)::

    envelope.json                 the CloudEvents envelope
    <type>/v<N>.json              data of one type and version, $id = the envelope's dataschema
    cross-border.json             per type and version, the fields it may carry abroad
    published.json                digest of every published version's schema: append-only

The check fails when (a) a committed schema differs from what the models generate, (b) a
published version's schema changed at all, or (c) a version lacks an upcaster from the
version before it. Generation is deterministic (sorted keys, fixed indentation).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lintas.contracts import registry
from lintas.contracts._base import EventData
from lintas.contracts.envelope import Envelope, dataschema_uri

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "LOCK_FILE",
    "SCHEMA_DIR",
    "Problem",
    "PublishedVersionChanged",
    "check_schemas",
    "data_schema",
    "envelope_schema",
    "generate",
    "render",
    "write_schemas",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
LOCK_FILE = "published.json"
ENVELOPE_FILE = "envelope.json"
CROSS_BORDER_FILE = "cross-border.json"
# Regenerated, not locked: the envelope is not versioned, and what may go abroad is a
# policy of the contracts that can change without a new version of the data.
_UNLOCKED = frozenset({ENVELOPE_FILE, CROSS_BORDER_FILE})


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str  # "a" stale schema, "b" published version changed, "c" missing upcaster
    message: str

    def __str__(self) -> str:
        return f"({self.rule}) {self.message}"


class PublishedVersionChanged(RuntimeError):
    """Regenerating would rewrite the schema of a version that is already published."""


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _digest(document: Mapping[str, Any]) -> str:
    compact = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(compact.encode()).hexdigest()


def data_schema(model: type[EventData]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": dataschema_uri(model.TYPE, model.VERSION),
        "title": f"{model.TYPE} v{model.VERSION}",
        "x-lintas-type": model.TYPE,
        "x-lintas-version": model.VERSION,
        **schema,
    }


def envelope_schema() -> dict[str, Any]:
    schema = Envelope.model_json_schema()
    schema.pop("title", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": "lintas:schemas/envelope.json",
        "title": "lintas CloudEvents 1.0 envelope (structured JSON mode)",
        **schema,
    }


def cross_border_document(models: Iterable[type[EventData]]) -> dict[str, Any]:
    """For each type and version, the fields it may carry to a partner abroad."""
    declared = {
        _lock_key(_relpath(model)): sorted(model.CROSS_BORDER)
        for model in models
        if model.CROSS_BORDER
    }
    return {
        "$id": "lintas:schemas/cross-border.json",
        "title": "lintas fields declared for cross-border sharing",
        "description": "An event addressed to a partner abroad (<cc>-<agency>) may carry only "
        "the fields listed for its type and version; a type and version not listed may carry "
        "none, so it cannot go abroad. The Publisher refuses anything else and the partner's "
        "consumer quarantines it.",
        "x-lintas-cross-border": dict(sorted(declared.items())),
    }


def _relpath(model: type[EventData]) -> str:
    return f"{model.TYPE}/v{model.VERSION}.json"


def generate(models: Iterable[type[EventData]] | None = None) -> dict[str, dict[str, Any]]:
    """Every schema file, by path relative to the schema directory."""
    model_list = list(models if models is not None else registry.all_models())
    files = {ENVELOPE_FILE: envelope_schema(), CROSS_BORDER_FILE: cross_border_document(model_list)}
    for model in model_list:
        files[_relpath(model)] = data_schema(model)
    return files


def _read_lock(root: Path) -> dict[str, str]:
    path = root / LOCK_FILE
    if not path.exists():
        return {}
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def _lock_key(relpath: str) -> str:
    return relpath.removesuffix(".json")


def write_schemas(
    root: Path = SCHEMA_DIR, models: Iterable[type[EventData]] | None = None
) -> list[str]:
    """Write every schema and add new versions to the lock; return the files changed.

    Refuses (and writes nothing) when a published version's schema would change.
    """
    files = generate(models)
    lock = _read_lock(root)
    changed_published = [
        _lock_key(rel)
        for rel, doc in files.items()
        if rel not in _UNLOCKED and lock.get(_lock_key(rel), _digest(doc)) != _digest(doc)
    ]
    if changed_published:
        raise PublishedVersionChanged(
            f"published versions would change: {', '.join(changed_published)}. A published "
            "version is never edited: add a new version with an upcaster instead"
        )
    written = []
    for rel, doc in files.items():
        path = root / rel
        text = render(doc)
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(rel)
        if rel not in _UNLOCKED:
            lock.setdefault(_lock_key(rel), _digest(doc))
    lock_text = render(dict(sorted(lock.items())))
    lock_path = root / LOCK_FILE
    if not lock_path.exists() or lock_path.read_text() != lock_text:
        lock_path.write_text(lock_text)
        written.append(LOCK_FILE)
    return written


def check_schemas(
    root: Path = SCHEMA_DIR,
    models: Iterable[type[EventData]] | None = None,
    upcasters: Mapping[tuple[str, int], object] | None = None,
) -> list[Problem]:
    """What breaks the contract rules; empty when the contracts are in order."""
    model_list = list(models if models is not None else registry.all_models())
    known_upcasters = upcasters if upcasters is not None else registry.upcasters()
    files = generate(model_list)
    lock = _read_lock(root)
    problems = []
    hint = "run `lintas contracts docs` and commit the result"
    for rel, doc in files.items():
        path = root / rel
        if not path.exists():
            problems.append(Problem("a", f"{rel} is missing: {hint}"))
        elif path.read_text() != render(doc):
            problems.append(Problem("a", f"{rel} differs from its model: {hint}"))
    committed = {str(p.relative_to(root)) for p in root.rglob("*.json")} - {LOCK_FILE}
    for rel in sorted(committed - set(files)):
        problems.append(Problem("a", f"{rel} has no model: a registered version was removed"))
    for rel, doc in files.items():
        key = _lock_key(rel)
        if rel in _UNLOCKED:
            continue
        if key not in lock:
            problems.append(Problem("a", f"{key} is not in {LOCK_FILE} yet: {hint}"))
        elif lock[key] != _digest(doc):
            problems.append(
                Problem(
                    "b",
                    f"{key} changed after publication; a published version is never edited: "
                    "restore it and add a new version with an upcaster",
                )
            )
    for key in sorted(set(lock) - {_lock_key(rel) for rel in files}):
        problems.append(Problem("b", f"{key} is published but no longer registered"))
    by_type: dict[str, list[int]] = {}
    for model in model_list:
        by_type.setdefault(model.TYPE, []).append(model.VERSION)
    for event_type, found in sorted(by_type.items()):
        found.sort()
        if found != list(range(1, len(found) + 1)):
            problems.append(Problem("c", f"{event_type} versions {found} are not 1..n"))
        for version in found[1:]:
            if (event_type, version - 1) not in known_upcasters:
                problems.append(
                    Problem("c", f"{event_type} v{version} has no upcaster from v{version - 1}")
                )
    return problems
