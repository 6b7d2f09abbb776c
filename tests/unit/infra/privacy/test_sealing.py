"""Field sealing and data-key wrapping, without a key store or a broker."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lintas.contracts import Sealed, build_data, encode, make_event, new_case_id
from lintas.contracts.families.case import ChildIdentity
from lintas.infra.privacy.sealing import (
    SealBroken,
    new_data_key,
    open_field,
    open_value,
    seal_data,
    unwrap_key,
    wrap_key,
)
from tests.support.samples import CHILD, SAMPLES


def test_sealed_fields_open_with_the_data_key_and_only_with_it() -> None:
    case_id, key = new_case_id(), new_data_key()
    data = seal_data(build_data("case.opened", SAMPLES["case.opened"]), key, 1, case_id=case_id)
    assert isinstance(data.child, Sealed)
    assert data.clear_fields() == []
    raw = encode(make_event(data, source="kemlu", target="kp2mi", case_id=case_id).envelope)
    for value in CHILD.values():
        assert str(value).encode() not in raw or value == "f"
    assert open_field(data, "child", {1: key}, case_id=case_id) == ChildIdentity(**CHILD)
    assert open_field(data, "child", {}, case_id=case_id) is None, "no key: nothing, no error"
    with pytest.raises(SealBroken):
        open_field(data, "child", {1: new_data_key()}, case_id=case_id)


def test_a_sealed_value_is_bound_to_its_case_event_type_and_field() -> None:
    case_id, key = new_case_id(), new_data_key()
    issued = seal_data(
        build_data("document.issued", SAMPLES["document.issued"]), key, 1, case_id=case_id
    )
    assert isinstance(issued.number, Sealed)
    kwargs = {"case_id": case_id, "event_type": "document.issued", "field": "number"}
    assert open_value(key, issued.number, **kwargs) == SAMPLES["document.issued"]["number"]
    for moved in (
        {**kwargs, "case_id": new_case_id()},
        {**kwargs, "event_type": "document.rejected"},
        {**kwargs, "field": "reason"},
    ):
        with pytest.raises(SealBroken):
            open_value(key, issued.number, **moved)
    ct = issued.number.ct
    # Another first character, whatever it was (replacing it with "A" failed 1 run in 64).
    flipped = issued.number.model_copy(update={"ct": ("B" if ct[0] == "A" else "A") + ct[1:]})
    with pytest.raises(SealBroken):
        open_value(key, flipped, **kwargs)


def test_two_seals_of_one_value_differ() -> None:
    case_id, key = new_case_id(), new_data_key()
    draft = build_data("case.reopened", SAMPLES["case.reopened"])
    first = seal_data(draft, key, 1, case_id=case_id)
    second = seal_data(draft, key, 1, case_id=case_id)
    assert first.reason != second.reason  # a fresh nonce each time


def test_a_wrapped_data_key_opens_only_for_its_agency() -> None:
    case_id, key = new_case_id(), new_data_key()
    kp2mi, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    bound = {"gen": 1, "agency": "kp2mi", "grant": "seq:3", "maker": "kemlu"}
    wrapped = wrap_key(key, kp2mi.public_key(), case_id=case_id, **bound)  # type: ignore[arg-type]
    assert json.dumps(wrapped).find(key.hex()) == -1
    assert unwrap_key(wrapped, kp2mi, case_id=case_id, **bound) == key  # type: ignore[arg-type]
    with pytest.raises(SealBroken):
        unwrap_key(wrapped, other, case_id=case_id, **bound)  # type: ignore[arg-type]
    with pytest.raises(SealBroken):
        unwrap_key(wrapped, kp2mi, case_id=new_case_id(), **bound)  # type: ignore[arg-type]
    # Bound to the agency it was wrapped for, its grant and its maker.
    for changed in ({"agency": "kemensos"}, {"grant": "seq:4"}, {"maker": "my-jkm"}):
        with pytest.raises(SealBroken):
            unwrap_key(wrapped, kp2mi, case_id=case_id, **(bound | changed))  # type: ignore[arg-type]
