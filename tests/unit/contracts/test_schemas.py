"""Committed JSON Schemas: every version round-trips, and the contracts check bites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from pydantic import Field

from lintas.contracts import EventData, all_models, latest, registry
from lintas.contracts.asyncapi import asyncapi_document
from lintas.contracts.schemadocs import (
    SCHEMA_DIR,
    PublishedVersionChanged,
    check_schemas,
    generate,
    render,
    write_schemas,
)
from tests.support.samples import CHILD, FAKE_SEALED, SAMPLES, on_the_wire

OLD_SAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("case.opened", 1): {
        "situation": "left_behind",
        "jurisdiction": "ID",
        "location": "Jawa Timur",
        "risk_level": "medium",
    },
    ("document.requested", 1): {"request_id": "doc-1", "kind": "nik"},
    ("rehabilitation.handoff_requested", 1): {"handoff_id": "rehab-1", "placement": "Sentra"},
    ("referral.overdue", 1): {"referral_id": "ref-1", "due": "2024-03-08T08:00:00Z"},
    ("oversight.escalated", 1): {
        "escalation_id": "esc-1",
        "concern": "trafficking",
        "reason": "recruited with false papers",
    },
    ("document.issued", 1): {
        "kind": "kk",
        "number": "3525000000000001",
        "issuing_office": "Disdukcapil Kabupaten Gresik",
        "issued_on": "2025-03-01",
    },
    ("case.opened", 2): {
        **SAMPLES["case.opened"],
        "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
        "child": CHILD,
    },
    ("document.issued", 2): {
        **SAMPLES["document.issued"],
        "issuing_office": "Disdukcapil Kabupaten Gresik",
        "issuing_office_code": "35.25",
    },
    # The versions before codes: free text in clear where the newest carries a code.
    ("case.opened", 3): {
        **SAMPLES["case.opened"],
        "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
        "child": FAKE_SEALED,
    },
    ("case.assigned", 1): {"owner": "kp2mi", "officer_ref": "P2MI-OFC-07"},
    ("case.erased", 1): {
        **SAMPLES["case.erased"],
        "legal_basis": "UU 27/2022 Pasal 8",
        "reason": "the parent asked",
    },
    ("consent.overridden", 1): {
        **SAMPLES["consent.overridden"],
        "officer_role": "UPTD PPA head",
        "legal_basis": "UU 35/2014 Pasal 59",
    },
    ("consent.overridden", 2): {
        **SAMPLES["consent.overridden"],
        "officer_role": "UPTD PPA head",
        "legal_basis": "UU 35/2014 Pasal 59",
        "reason": FAKE_SEALED,
    },
    ("document.issued", 3): {
        **SAMPLES["document.issued"],
        "number": FAKE_SEALED,
        "issuing_office": "Disdukcapil Kabupaten Gresik",
        "issuing_office_code": "35.25",
    },
    ("rehabilitation.handoff_requested", 2): {
        **SAMPLES["rehabilitation.handoff_requested"],
        "placement": "Sentra Bogor",
    },
    ("repatriation.scheduled", 1): {
        **SAMPLES["repatriation.scheduled"],
        "port_of_entry": "Nunukan",
    },
    ("repatriation.completed", 1): {
        **SAMPLES["repatriation.completed"],
        "port_of_entry": "Nunukan",
    },
    ("consent.withdrawn", 1): {"consent_id": "consent-1", "reason": "moved"},
    # main's v2 (names the overdue hand-off), before v3 sealed its reason.
    ("oversight.escalated", 2): SAMPLES["oversight.escalated"],
    # The versions before sealing: the same fields, personal ones in the clear.
    **{
        (event_type, 1): SAMPLES[event_type]
        for event_type in (
            "case.assessed",
            "case.reopened",
            "document.rejected",
            "oversight.reviewed",
            "referral.rejected",
            "referral.requested",
            "referral.revoked",
            "rehabilitation.progress_reported",
            "repatriation.failed",
        )
    },
}
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _sample(model: type[EventData]) -> dict[str, Any]:
    if model is latest(model.TYPE):
        return on_the_wire(model.TYPE)
    return OLD_SAMPLES[(model.TYPE, model.VERSION)]


def _committed(model: type[EventData]) -> dict[str, Any]:
    path = SCHEMA_DIR / model.TYPE / f"v{model.VERSION}.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_every_old_version_has_a_sample() -> None:
    old = {(m.TYPE, m.VERSION) for m in all_models() if m is not latest(m.TYPE)}
    assert old == set(OLD_SAMPLES)


@pytest.mark.parametrize("model", list(all_models()), ids=lambda m: f"{m.TYPE}.v{m.VERSION}")
def test_every_version_round_trips_through_its_committed_schema(model: type[EventData]) -> None:
    schema = _committed(model)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    sample = _sample(model)
    validator.validate(sample)
    dumped = model.model_validate(sample).model_dump(mode="json", exclude_none=True)
    validator.validate(dumped)
    assert model.model_validate(dumped) == model.model_validate(sample)
    assert not validator.is_valid({**sample, "unexpected": 1}), "extra fields must be refused"


def test_the_envelope_schema_accepts_an_encoded_envelope() -> None:
    from lintas.contracts import build_data, encode, make_event, new_case_id

    event = make_event(
        build_data("case.closed", {"reason": "reunified"}),
        source="kp2mi",
        target="all",
        case_id=new_case_id(),
    )
    schema = json.loads((SCHEMA_DIR / "envelope.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=FORMATS).validate(
        json.loads(encode(event.envelope))
    )


def test_committed_schemas_are_current() -> None:
    assert check_schemas() == []


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, copy)
    return copy


def test_check_a_a_stale_or_missing_schema(schema_copy: Path) -> None:
    path = schema_copy / "referral.requested" / "v1.json"
    path.write_text(path.read_text().replace('"maxLength": 2000', '"maxLength": 20'))
    (schema_copy / "case.closed" / "v1.json").unlink()
    problems = check_schemas(schema_copy)
    assert [(p.rule, p.message.split(" ")[0]) for p in problems] == [
        ("a", "case.closed/v1.json"),
        ("a", "referral.requested/v1.json"),
    ]


class ClosedV1Edited(EventData):
    TYPE: ClassVar[str] = "case.closed"
    VERSION: ClassVar[int] = 1
    reason: str = Field(max_length=10)  # was an enum: a published version edited


class ClosedV2(EventData):
    TYPE: ClassVar[str] = "case.closed"
    VERSION: ClassVar[int] = 2
    reason: str
    note: str | None = None


def _swap(*replacements: type[EventData]) -> list[type[EventData]]:
    keys = {(m.TYPE, m.VERSION) for m in replacements}
    return [m for m in all_models() if (m.TYPE, m.VERSION) not in keys] + list(replacements)


def test_check_b_a_published_version_edited_even_after_regenerating(schema_copy: Path) -> None:
    models = _swap(ClosedV1Edited)
    with pytest.raises(PublishedVersionChanged, match=r"case\.closed/v1"):
        write_schemas(schema_copy, models)
    # Regenerate the files by hand (as someone bypassing the command would): (b) still bites.
    for rel, doc in generate(models).items():
        (schema_copy / rel).write_text(render(doc))
    problems = check_schemas(schema_copy, models)
    assert [(p.rule, p.message.split(" ")[0]) for p in problems] == [("b", "case.closed/v1")]


def test_check_c_a_new_version_without_upcaster(schema_copy: Path) -> None:
    models = _swap(ClosedV2)
    assert write_schemas(schema_copy, models) == [
        "case.closed/v2.json",
        "published.json",
    ]
    problems = check_schemas(schema_copy, models)
    assert [str(p) for p in problems] == ["(c) case.closed v2 has no upcaster from v1"]
    with_upcaster = {**registry.upcasters(), ("case.closed", 1): lambda d: d}
    assert check_schemas(schema_copy, models, with_upcaster) == []


def test_check_b_a_published_version_removed(schema_copy: Path) -> None:
    models = [m for m in all_models() if m.TYPE != "tracing.reunified"]
    problems = check_schemas(schema_copy, models)
    assert ("b", "tracing.reunified/v1 is published but no longer registered") in [
        (p.rule, p.message) for p in problems
    ]


def test_asyncapi_lists_every_message_on_its_family_channels() -> None:
    doc = asyncapi_document("9.9.9")
    assert doc["asyncapi"] == "3.0.0"
    messages = doc["components"]["messages"]
    assert set(messages) == {f"{m.TYPE}.v{m.VERSION}" for m in all_models()}
    assert messages["case.opened.v4"]["x-lintas-newest-version"] is True
    assert messages["case.opened.v3"]["x-lintas-newest-version"] is False
    for name, channel in doc["channels"].items():
        family = name.split(".")[0]
        assert channel["address"].split(".")[3] == family
        assert len(channel["address"].split(".")) == 6
        assert {ref.split(".")[0] for ref in channel["messages"]} == {family}
    assert doc["channels"]["document.to.dukcapil"]["address"] == (
        "lintas.{source}.dukcapil.document.{action}.{caseId}"
    )
    for operation in doc["operations"].values():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]


def test_the_cross_border_document_lists_what_each_version_may_carry_abroad() -> None:
    doc = json.loads((SCHEMA_DIR / "cross-border.json").read_text())
    declared = doc["x-lintas-cross-border"]
    assert declared["referral.requested/v2"] == ["due", "referral_id", "service"]
    assert "case.opened/v4" not in declared  # nothing of an intake goes abroad
    for model in all_models():
        key = f"{model.TYPE}/v{model.VERSION}"
        assert declared.get(key, []) == sorted(model.CROSS_BORDER)
        assert not model.CROSS_BORDER & model.personal_fields(), key  # never personal data


def test_a_sealed_field_publishes_the_schema_of_its_plaintext() -> None:
    schema = _committed(latest("document.issued"))
    number = schema["properties"]["number"]
    assert number["x-lintas-personal"] is True
    assert number["x-lintas-sealed"] == {"maxLength": 64, "type": "string"}
    assert number["oneOf"] == [{"$ref": "#/$defs/Sealed"}]
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    assert not validator.is_valid(SAMPLES["document.issued"]), "plaintext is refused"
