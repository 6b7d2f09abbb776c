"""The CloudEvents envelope and codec: build_data, make_event, encode, decode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from lintas.contracts import (
    ContractError,
    EnvelopeError,
    Event,
    EventData,
    InvalidEventData,
    SubjectError,
    UnknownEventType,
    UnknownVersion,
    all_models,
    build_data,
    dataschema_uri,
    decode,
    encode,
    is_uuid7,
    latest,
    make_event,
    uuid7,
)
from lintas.contracts.families.case import ChildIdentity
from lintas.infra.privacy.sealing import open_field
from tests.support.events import CASE, T0
from tests.support.samples import CHILD, SAMPLES, TEST_KEY, sealed

TYPES = sorted(SAMPLES)


def _event(event_type: str = "referral.requested", **kwargs: Any) -> Event:
    options: dict[str, Any] = {
        "source": "kp2mi",
        "target": "dukcapil",
        "case_id": CASE,
        "time": T0,
    }
    options.update(kwargs)
    return make_event(sealed(event_type, options["case_id"]), **options)


def _doc(event_type: str = "referral.requested") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(encode(_event(event_type).envelope))
    return doc


def _raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


# -- every registered model ------------------------------------------------------------


def test_every_registered_type_has_a_sample() -> None:
    assert set(SAMPLES) == {model.TYPE for model in all_models()}


def test_samples_use_the_latest_version_of_each_type() -> None:
    for event_type in TYPES:
        assert type(build_data(event_type, SAMPLES[event_type])) is latest(event_type)


def test_a_draft_holds_plaintext_but_never_decodes_from_the_wire() -> None:
    draft = build_data("case.opened", SAMPLES["case.opened"])
    assert draft.clear_fields() == ["child"]
    raw = encode(make_event(draft, source="kemlu", target="kp2mi", case_id=CASE).envelope)
    with pytest.raises(InvalidEventData) as caught:
        decode(raw)
    assert (caught.value.event_type, caught.value.version, caught.value.field) == (
        "case.opened",
        4,
        "data.child",
    )
    assert "must be sealed" in str(caught.value)
    assert decode(raw, draft=True).data == draft  # an outbox row, before the relay seals it


@pytest.mark.parametrize("event_type", TYPES)
def test_round_trip(event_type: str) -> None:
    event = _event(event_type)
    raw = encode(event.envelope)
    decoded = decode(raw, subject=event.envelope.nats_subject)
    assert decoded.envelope == event.envelope
    assert decoded.data == event.data
    assert type(decoded.data) is type(event.data)
    assert decoded.type == event_type
    assert decoded.case_id == CASE
    assert decoded.source == "kp2mi"
    assert decoded.target == "dukcapil"
    assert decoded.time == T0
    assert decoded.id == event.id


@pytest.mark.parametrize("event_type", TYPES)
def test_envelope_fields(event_type: str) -> None:
    event = _event(event_type)
    doc = json.loads(encode(event.envelope))
    model = latest(event_type)
    assert doc["specversion"] == "1.0"
    assert doc["datacontenttype"] == "application/json"
    assert doc["type"] == event_type
    assert doc["subject"] == CASE
    assert doc["dataversion"] == model.VERSION
    assert doc["dataschema"] == f"lintas:schemas/{event_type}/v{model.VERSION}.json"
    assert doc["dataschema"] == dataschema_uri(event_type, model.VERSION)
    assert doc["source"] == "kp2mi"
    assert doc["target"] == "dukcapil"
    assert is_uuid7(doc["id"])
    family, action = event_type.split(".")
    assert event.envelope.nats_subject == f"lintas.kp2mi.dukcapil.{family}.{action}.{CASE}"


def test_encode_leaves_out_unset_optional_fields() -> None:
    doc = _doc("case.closed")
    for absent in ("correlationid", "causationid", "traceparent", "signature", "prevhash"):
        assert absent not in doc
    assert doc["data"] == {"reason": "reintegrated"}


def test_encode_keeps_time_zone_and_sealed_personal_data() -> None:
    plus8 = timezone(timedelta(hours=8))
    event = _event("case.opened", time=datetime(2024, 3, 1, 16, 0, tzinfo=plus8))
    raw = encode(event.envelope)
    decoded = decode(raw)
    assert decoded.time == T0
    assert decoded.time.utcoffset() == timedelta(hours=8)
    assert decoded.envelope.data["child"]["alg"] == "A256GCM"
    assert CHILD["full_name"].encode() not in raw
    opened = open_field(decoded.data, "child", {1: TEST_KEY}, case_id=CASE)
    assert opened == ChildIdentity.model_validate(CHILD)


# -- ids: the event id is also the Nats-Msg-Id -----------------------------------------


def test_event_ids_are_fresh_uuid7() -> None:
    first, second = _event(), _event()
    assert is_uuid7(first.id)
    assert is_uuid7(second.id)
    assert first.id != second.id
    assert first.id < second.id


def test_an_explicit_event_id_is_kept() -> None:
    event_id = str(uuid7())
    assert _event(event_id=event_id).id == event_id


def test_causation_and_correlation_travel() -> None:
    cause = _event()
    event = _event(
        "referral.accepted",
        causationid=cause.id,
        correlationid="corr-1",
        source="dukcapil",
        target="kp2mi",
    )
    decoded = decode(encode(event.envelope))
    assert decoded.envelope.causationid == cause.id
    assert decoded.envelope.correlationid == "corr-1"


@pytest.mark.parametrize("bad", ["not-a-uuid", "4c4d0fe4-4a35-4b41-9c9b-cd5cd7b7d8a2"])
def test_make_event_refuses_an_event_id_that_is_not_uuid7(bad: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        _event(event_id=bad)
    assert caught.value.field == "id"
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2


def test_make_event_refuses_a_naive_time() -> None:
    with pytest.raises(EnvelopeError) as caught:
        _event(time=datetime(2024, 3, 1, 8, 0))
    assert caught.value.field == "time"
    assert "referral.requested v2" in str(caught.value)


def test_make_event_refuses_a_self_addressed_event() -> None:
    with pytest.raises(SubjectError) as caught:
        _event(target="kp2mi")
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2
    assert "itself" in str(caught.value)


def test_make_event_refuses_a_bad_case_id() -> None:
    with pytest.raises(SubjectError, match="case id"):
        _event(case_id="case-42")


def test_make_event_accepts_broadcast_target() -> None:
    event = _event("case.closed", target="all")
    assert event.envelope.nats_subject == f"lintas.kp2mi.all.case.closed.{CASE}"


# -- decode errors ---------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff\xfe\x00"])
def test_decode_refuses_non_json(raw: bytes) -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        decode(raw)


@pytest.mark.parametrize("doc", [[], [1, 2], "text", 42, None])
def test_decode_refuses_json_that_is_not_an_object(doc: object) -> None:
    with pytest.raises(EnvelopeError, match="not an object"):
        decode(_raw(doc))


@pytest.mark.parametrize(
    "missing",
    ["id", "source", "type", "time", "subject", "dataschema", "dataversion", "target", "data"],
)
def test_decode_refuses_a_missing_envelope_field(missing: str) -> None:
    doc = _doc()
    del doc[missing]
    with pytest.raises(EnvelopeError) as caught:
        decode(_raw(doc))
    assert caught.value.field == missing
    if missing != "type":
        assert caught.value.event_type == "referral.requested"
    if missing != "dataversion":
        assert caught.value.version == 2


def test_decode_names_type_version_and_field_in_the_message() -> None:
    doc = _doc()
    del doc["id"]
    with pytest.raises(EnvelopeError, match=r"referral\.requested v2, field 'id'"):
        decode(_raw(doc))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "4c4d0fe4-4a35-4b41-9c9b-cd5cd7b7d8a2"),
        ("source", "all"),
        ("source", "nobody"),
        ("target", "nobody"),
        ("subject", "C123"),
        ("specversion", "0.3"),
        ("datacontenttype", "text/plain"),
        ("dataversion", 0),
        ("time", "2024-03-01T08:00:00"),
        ("causationid", "not-a-uuid"),
        ("data", [1, 2]),
    ],
)
def test_decode_refuses_a_bad_envelope_field(field: str, value: object) -> None:
    doc = _doc()
    doc[field] = value
    with pytest.raises(EnvelopeError) as caught:
        decode(_raw(doc))
    assert caught.value.field == field


def test_decode_refuses_an_extra_envelope_field() -> None:
    doc = _doc()
    doc["childname"] = "Dewi"
    with pytest.raises(EnvelopeError) as caught:
        decode(_raw(doc))
    assert caught.value.field == "childname"


def test_decode_refuses_an_unknown_type() -> None:
    doc = _doc()
    doc["type"] = "case.vanished"
    with pytest.raises(UnknownEventType) as caught:
        decode(_raw(doc))
    assert caught.value.event_type == "case.vanished"
    assert "case.vanished" in str(caught.value)
    assert isinstance(caught.value, ContractError)


def test_decode_refuses_an_unknown_version() -> None:
    doc = _doc()
    doc["dataversion"] = 99
    doc["dataschema"] = dataschema_uri("referral.requested", 99)
    with pytest.raises(UnknownVersion) as caught:
        decode(_raw(doc))
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 99
    assert "referral.requested v99" in str(caught.value)
    assert "v2" in str(caught.value).split(":", 1)[1]  # says which versions it knows


def test_decode_refuses_an_extra_data_field() -> None:
    doc = _doc()
    doc["data"]["child_name"] = "Dewi"
    with pytest.raises(InvalidEventData) as caught:
        decode(_raw(doc))
    assert caught.value.field == "data.child_name"
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2
    assert "referral.requested v2, field 'data.child_name'" in str(caught.value)


@pytest.mark.parametrize(
    ("event_type", "path", "value", "field"),
    [
        ("referral.requested", ("referral_id",), 42, "data.referral_id"),
        ("referral.requested", ("service",), "massage", "data.service"),
        ("referral.requested", ("due",), "next week", "data.due"),
        ("case.opened", ("jurisdiction", "country"), "Malaysia", "data.jurisdiction.country"),
        ("case.opened", ("child", "iv"), 7, "data.child.iv"),
        ("case.assigned", ("owner",), "all", "data.owner"),
        ("tracing.requested", ("countries",), [], "data.countries"),
        ("document.issued", ("issued_on",), "yesterday", "data.issued_on"),
    ],
)
def test_decode_refuses_wrong_data(
    event_type: str, path: tuple[str, ...], value: object, field: str
) -> None:
    doc = _doc(event_type)
    holder = doc["data"]
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with pytest.raises(InvalidEventData) as caught:
        decode(_raw(doc))
    assert caught.value.field == field
    assert caught.value.event_type == event_type
    assert caught.value.version == doc["dataversion"] == latest(event_type).VERSION


def test_decode_refuses_missing_data_field() -> None:
    doc = _doc()
    del doc["data"]["service"]
    with pytest.raises(InvalidEventData) as caught:
        decode(_raw(doc))
    assert caught.value.field == "data.service"


def test_decode_refuses_a_subject_mismatch() -> None:
    event = _event()
    other = f"lintas.kp2mi.kemensos.referral.requested.{CASE}"
    with pytest.raises(EnvelopeError) as caught:
        decode(encode(event.envelope), subject=other)
    assert caught.value.field == "subject"
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2


def test_decode_refuses_a_dataschema_mismatch() -> None:
    doc = _doc()
    doc["dataschema"] = dataschema_uri("referral.accepted", 1)
    with pytest.raises(EnvelopeError) as caught:
        decode(_raw(doc))
    assert caught.value.field == "dataschema"
    assert caught.value.event_type == "referral.requested"


@pytest.mark.parametrize("with_subject", [False, True])
def test_decode_refuses_a_self_addressed_envelope(with_subject: bool) -> None:
    doc = _doc()
    doc["target"] = "kp2mi"
    subject = f"lintas.kp2mi.kp2mi.referral.requested.{CASE}" if with_subject else None
    with pytest.raises(ContractError) as caught:
        decode(_raw(doc), subject=subject)
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2


# -- build_data ------------------------------------------------------------------------


def test_build_data_names_type_version_and_field() -> None:
    with pytest.raises(InvalidEventData) as caught:
        build_data("referral.requested", {"referral_id": "ref-1", "service": "massage"})
    assert caught.value.event_type == "referral.requested"
    assert caught.value.version == 2
    assert caught.value.field == "service"
    assert "referral.requested v2, field 'service'" in str(caught.value)


def test_build_data_names_a_nested_field() -> None:
    data = dict(SAMPLES["case.opened"], child={"full_name": ""})
    with pytest.raises(InvalidEventData) as caught:
        build_data("case.opened", data)
    assert caught.value.field == "child.full_name"
    assert "case.opened v4, field 'child.full_name'" in str(caught.value)


def test_build_data_names_an_extra_field() -> None:
    with pytest.raises(InvalidEventData, match=r"case\.closed v1, field 'child'"):
        build_data("case.closed", {"reason": "other", "child": "Dewi"})


def test_build_data_refuses_an_unknown_type() -> None:
    with pytest.raises(UnknownEventType) as caught:
        build_data("case.vanished", {})
    assert caught.value.event_type == "case.vanished"


def test_build_data_takes_a_model_of_the_latest_version() -> None:
    data = build_data("case.closed", {"reason": "other"})
    assert build_data("case.closed", data) == data


def test_build_data_refuses_a_model_of_another_type() -> None:
    data = build_data("case.closed", {"reason": "other"})
    with pytest.raises(ContractError) as caught:
        build_data("case.reopened", data)
    assert caught.value.event_type == "case.reopened"
    assert "case.closed v1" in str(caught.value)


def test_build_data_strips_whitespace() -> None:
    data = build_data("case.assigned", {"owner": " kp2mi ", "officer_ref": " OFC-1 "})
    assert data.model_dump() == {"owner": "kp2mi", "officer_ref": "OFC-1"}


# -- models: frozen, no extra fields ---------------------------------------------------


@pytest.mark.parametrize("event_type", TYPES)
def test_every_model_is_frozen(event_type: str) -> None:
    data = build_data(event_type, SAMPLES[event_type])
    name = next(iter(type(data).model_fields))
    before = getattr(data, name)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(data, name, before)
    assert getattr(data, name) == before


@pytest.mark.parametrize("event_type", TYPES)
def test_every_model_forbids_extra_fields(event_type: str) -> None:
    model = latest(event_type)
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({**SAMPLES[event_type], "unexpected": 1})


def test_child_identity_is_frozen_and_closed() -> None:
    child = ChildIdentity.model_validate(CHILD)
    with pytest.raises(ValidationError):
        child.full_name = "someone else"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ChildIdentity.model_validate({**CHILD, "nik": "3525000000000001"})


# -- personal data ---------------------------------------------------------------------

PERSONAL = {
    "case.opened": {"child"},
    "case.assessed": {"summary"},
    "case.reopened": {"reason"},
    "consent.overridden": {"reason"},
    "consent.withdrawn": {"reason"},
    "document.issued": {"number"},
    "document.rejected": {"reason"},
    "oversight.escalated": {"reason"},
    "oversight.reviewed": {"recommendation"},
    "referral.rejected": {"reason"},
    "referral.requested": {"notes"},
    "referral.revoked": {"reason"},
    "rehabilitation.progress_reported": {"summary"},
    "repatriation.failed": {"reason"},
}


def test_case_opened_personal_fields() -> None:
    assert latest("case.opened").personal_fields() == {"child"}


def test_personal_fields_of_every_model() -> None:
    found = {m.TYPE: set(m.personal_fields()) for m in all_models() if m.personal_fields()}
    assert found == PERSONAL


def test_the_latest_version_of_every_type_seals_its_personal_fields() -> None:
    for event_type in TYPES:
        model = latest(event_type)
        assert model.sealed_fields() == model.personal_fields(), event_type


def test_child_identity_fields_carry_the_personal_marker() -> None:
    schema = latest("case.opened").model_json_schema()
    assert schema["properties"]["child"]["anyOf"][0] == {"oneOf": [{"$ref": "#/$defs/Sealed"}]}
    child = schema["properties"]["child"]["x-lintas-sealed"]["properties"]
    assert set(child) == {"full_name", "birth_date", "sex", "mother_name", "father_name", "address"}
    for name, prop in child.items():
        assert prop.get("x-lintas-personal") is True, name
    assert schema["properties"]["child"]["x-lintas-personal"] is True
    for name in ("situation", "jurisdiction", "location", "risk_level", "home_village"):
        assert "x-lintas-personal" not in schema["properties"][name], name


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("event_type", sorted(PERSONAL))
def test_no_personal_data_in_subjects(event_type: str) -> None:
    event = _event(event_type)
    subject = event.envelope.nats_subject
    tokens = subject.split(".")
    dumped = build_data(event_type, SAMPLES[event_type]).model_dump(mode="json")
    for name in type(event.data).personal_fields():
        assert name not in tokens
        values = _strings(dumped[name])
        assert values, f"the sample of {event_type} should fill {name}"
        for value in values:
            assert value not in subject


def test_family_is_the_type_prefix() -> None:
    assert issubclass(latest("case.opened"), EventData)
    assert latest("case.opened").family() == "case"
    assert latest("rehabilitation.reintegration_handoff").family() == "rehabilitation"


def test_time_is_preserved_as_utc_instant() -> None:
    event = _event(time=datetime(2024, 3, 1, 8, 0, tzinfo=UTC))
    assert json.loads(encode(event.envelope))["time"].startswith("2024-03-01T08:00:00")


def test_an_escalation_names_an_overdue_handoff_only_for_that_concern() -> None:
    data = {**SAMPLES["oversight.escalated"], "concern": "trafficking"}
    with pytest.raises(InvalidEventData, match="overdue_handoff"):
        build_data("oversight.escalated", data)
    without = {k: v for k, v in data.items() if k != "overdue"}
    assert build_data("oversight.escalated", without).model_dump()["overdue"] is None
