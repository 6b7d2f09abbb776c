"""The public surface of every lintas package, written out: a name added to or dropped
from a package's ``__all__`` fails here, so that a change of surface is a deliberate one.

Each ``__all__`` is in the order ruff keeps it (RUF022: constants, then classes, then the
rest), every name in it is importable, and nothing public the package's ``__init__`` binds
is left out of it.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

EXPORTED: dict[str, list[str]] = {
    "lintas.admission": [
        "AdmissionService",
    ],
    "lintas.contracts": [
        "BROADCAST",
        "NATIONAL_AGENCIES",
        "PERSONAL_KEY",
        "PLATFORM_SERVICES",
        "SEALED_KEY",
        "WATCHDOG",
        "AuthorityRefused",
        "CaseErased",
        "ConsentMissing",
        "ContractError",
        "Envelope",
        "EnvelopeError",
        "Event",
        "EventData",
        "GateRefused",
        "InvalidEventData",
        "LintasError",
        "NotForAbroad",
        "PermanentError",
        "Sealed",
        "SignatureError",
        "Subject",
        "SubjectError",
        "TransientError",
        "UnknownEventType",
        "UnknownVersion",
        "agency_name",
        "all_models",
        "build_data",
        "canonical_json",
        "case_filter",
        "dataschema_uri",
        "decode",
        "derived_uuid7",
        "encode",
        "event_hash",
        "families",
        "inbound_filters",
        "is_agency_id",
        "is_case_id",
        "is_uuid7",
        "latest",
        "lookup",
        "make_event",
        "message_hash",
        "new_case_id",
        "outbound_filter",
        "parse_message",
        "parse_subject",
        "personal",
        "signing_input",
        "subject_for",
        "uuid7",
        "versions",
    ],
    "lintas.contracts.families": [
        "case",
        "consent",
        "document",
        "oversight",
        "referral",
        "rehabilitation",
        "repatriation",
        "tracing",
    ],
    "lintas.producers": [
        "AccessRefused",
        "Admission",
        "BusUnavailable",
        "CaseErased",
        "CaseHead",
        "ChainContention",
        "ConsentMissing",
        "ContractError",
        "Draft",
        "EnvelopeError",
        "GateRefused",
        "HeadMoved",
        "IntakeFull",
        "IntakeTooLarge",
        "InvalidEventData",
        "LintasError",
        "NatsClientClosed",
        "NoExchangeKey",
        "NoKeyStore",
        "NotAKeyHolder",
        "NotAuthorised",
        "NotForAbroad",
        "Outbox",
        "OutboxRecord",
        "OutboxRelay",
        "PermanentError",
        "PublishRejected",
        "Published",
        "Publisher",
        "ReadRefused",
        "Refused",
        "SealBroken",
        "SignatureError",
        "SigningKeyError",
        "SubjectError",
        "TransientError",
        "UnknownEventType",
        "UnknownVersion",
        "connect",
        "ensure_outbox_table",
        "publisher_for",
    ],
    "lintas.consumers": [
        "CaseRecord",
        "Handoff",
        "Step",
        "WorkItem",
        "classify",
        "deadlines",
        "record",
        "worklist",
    ],
    "lintas.audit": [
        "NOT_EVENTS",
        "PROBLEMS",
        "ArchiveError",
        "ArchiveReader",
        "ArchiveWriter",
        "CasePass",
        "Checkpoint",
        "CheckpointChecker",
        "Checkpointer",
        "EventRef",
        "LogChecker",
        "Manifest",
        "NotAFreshStore",
        "PersonalSummary",
        "Problem",
        "RecordDigest",
        "ReplayResult",
        "ReplayWorkerDied",
        "RunningCheckpointer",
        "StoredEvent",
        "StreamCut",
        "StreamReader",
        "Verdict",
        "checkpoint_stream",
        "export_archive",
        "live_record_url",
        "open_fresh_store",
        "parse_instant",
        "personal_summary",
        "read_checkpoints",
        "record_digest",
        "replay",
        "start_checkpointer",
        "verify_archive",
        "verify_stream",
    ],
    # infra's names are imported from their modules: its packages export nothing.
    "lintas.infra": [],
    "lintas.infra.deploy": [],
    "lintas.infra.keys": [],
    "lintas.infra.nats": [],
    "lintas.infra.observability": [],
    "lintas.infra.privacy": [],
    "lintas.cli": ["main"],
    "lintas.demo": [
        "PARTNER",
        "PATHWAYS",
        "VILLAGE",
        "DemoRefused",
        "DemoResult",
        "DemoTimeout",
        "ExpectedHandoff",
        "Pathway",
        "Reaction",
        "agencies",
        "check_record",
        "demo_consumers",
        "pathway_of",
        "react",
        "run_demo",
    ],
}


def _ruff_order(name: str) -> tuple[int, str]:
    """RUF022's isort-style order: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("package", EXPORTED)
def test_all_is_exactly_the_expected_sorted_list(package: str) -> None:
    assert EXPORTED[package] == sorted(EXPORTED[package], key=_ruff_order)
    assert importlib.import_module(package).__all__ == EXPORTED[package]


@pytest.mark.parametrize("package", EXPORTED)
def test_every_exported_name_is_importable(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # fails on any name __all__ cannot give
    module = importlib.import_module(package)
    for name in EXPORTED[package]:
        assert namespace[name] is getattr(module, name)


@pytest.mark.parametrize("package", EXPORTED)
def test_nothing_public_the_init_binds_is_left_out_of_all(package: str) -> None:
    # Submodules are attributes of their package once anything imports them: not exports.
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__ import annotations
        and not isinstance(value, types.ModuleType)
    }
    assert public - set(module.__all__) == set()


_TOP_LEVEL = ("admission", "audit", "cli", "consumers", "contracts", "demo", "infra", "producers")


def test_every_lintas_package_is_pinned() -> None:
    """A new package (or subpackage) is added here with its surface. (``lintas`` itself is
    a namespace that an editable install cannot walk: the roots are listed.)"""
    roots = [importlib.import_module(f"lintas.{name}") for name in _TOP_LEVEL]
    found = {root.__name__ for root in roots}
    for root in roots:
        prefix = f"{root.__name__}."
        found |= {info.name for info in pkgutil.walk_packages(root.__path__, prefix) if info.ispkg}
    assert found == set(EXPORTED)
