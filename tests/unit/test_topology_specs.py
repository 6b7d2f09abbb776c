"""Consumer specs and configs, without a broker."""

from __future__ import annotations

import pytest

from lintas.contracts.errors import SubjectError
from lintas.infra.settings import Settings
from lintas.infra.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    consumer_config,
    record_consumer,
    staff_consumer,
)


def test_consumer_names_are_valid_jetstream_names() -> None:
    for spec in (
        agency_consumer("desa-3201010001"),
        agency_sent_consumer("my-jkm"),
        record_consumer(),
        staff_consumer("kp2mi"),
    ):
        assert "." not in spec.name
        assert spec.filter_subjects


@pytest.mark.parametrize("name", ["agency.kp2mi", "a b", "*", ""])
def test_an_invalid_consumer_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="consumer name"):
        ConsumerSpec(name, ("lintas.>",))


def test_a_consumer_for_a_non_agency_is_refused() -> None:
    with pytest.raises(SubjectError):
        agency_consumer("all")


def test_one_filter_uses_filter_subject_several_use_filter_subjects() -> None:
    settings = Settings()
    single = consumer_config(agency_sent_consumer("kp2mi"), settings)
    assert (single.filter_subject, single.filter_subjects) == ("lintas.kp2mi.>", None)
    several = consumer_config(agency_consumer("kp2mi"), settings)
    assert several.filter_subject is None
    assert several.filter_subjects == ["lintas.*.kp2mi.>", "lintas.*.all.>"]
