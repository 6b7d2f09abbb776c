"""Event ids (UUIDv7, monotonic), derived ids and pseudonymous case ids."""

from __future__ import annotations

import itertools
import random
import re
import uuid

import pytest

from lintas.contracts import derived_uuid7, ids, is_case_id, is_uuid7, new_case_id, uuid7

CASE_ID = re.compile(r"^C[0-9A-HJKMNP-TV-Z]{26}$")


def _ms(value: uuid.UUID) -> int:
    return value.int >> 80


def test_uuid7_has_version_7_and_rfc_variant() -> None:
    for _ in range(50):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 7
        assert (value.int >> 62) & 0b11 == 0b10
        assert is_uuid7(str(value))


def test_uuid7_carries_the_current_unix_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ms = 1_709_280_000_123
    monkeypatch.setattr(ids.time, "time_ns", lambda: now_ms * 1_000_000 + 456)
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)  # restored afterwards, with _last_ms
    assert _ms(uuid7()) == now_ms


def test_1000_consecutive_uuid7_strictly_increase() -> None:
    values = [uuid7() for _ in range(1000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    as_text = [str(v) for v in values]
    assert as_text == sorted(as_text)
    assert len(set(values)) == 1000


def test_uuid7_stays_monotonic_on_a_frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5000 ids in "one millisecond" exhaust the 12-bit counter: the generator must borrow
    # the next millisecond rather than wrap around.
    frozen_ms = 1_709_280_000_000
    monkeypatch.setattr(ids.time, "time_ns", lambda: frozen_ms * 1_000_000)
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)  # restored afterwards, with _last_ms
    values = [uuid7() for _ in range(5000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert _ms(values[0]) == frozen_ms
    assert _ms(values[-1]) > frozen_ms


def test_uuid7_stays_monotonic_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_709_280_000_500]
    monkeypatch.setattr(ids.time, "time_ns", lambda: clock[0] * 1_000_000)
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)  # restored afterwards, with _last_ms
    first = uuid7()
    clock[0] -= 400  # NTP correction
    second = uuid7()
    assert second > first
    assert _ms(second) == _ms(first)


def test_derived_uuid7_is_deterministic() -> None:
    assert derived_uuid7("event-1/0", 1_709_280_000_000) == derived_uuid7(
        "event-1/0", 1_709_280_000_000
    )


def test_derived_uuid7_differs_by_seed_and_by_time() -> None:
    base = derived_uuid7("event-1/0", 1_709_280_000_000)
    assert derived_uuid7("event-1/1", 1_709_280_000_000) != base
    assert derived_uuid7("event-2/0", 1_709_280_000_000) != base
    assert derived_uuid7("event-1/0", 1_709_280_000_001) != base


def test_derived_uuid7_is_a_valid_v7_with_the_given_millisecond() -> None:
    value = derived_uuid7("some cause", 1_709_280_000_042)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert _ms(value) == 1_709_280_000_042
    assert is_uuid7(str(value))


@pytest.mark.parametrize(
    "text",
    [
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        "not-a-uuid",
        "",
        "01890a5d-ac96-774b-bcce-b302099a8057x",
        # version nibble 7 but NCS variant: not an RFC 9562 UUIDv7
        "01890a5d-ac96-774b-0cce-b302099a8057",
    ],
)
def test_is_uuid7_refuses_other_strings(text: str) -> None:
    assert is_uuid7(text) is False


def test_is_uuid7_refuses_non_canonical_spellings() -> None:
    value = str(uuid7())
    assert is_uuid7("{" + value + "}") is False
    assert is_uuid7("urn:uuid:" + value) is False
    assert is_uuid7(value.replace("-", "")) is False


def test_is_uuid7_refuses_what_is_not_text() -> None:
    value = uuid7()
    for other in (None, value, str(value).encode(), value.int):
        assert is_uuid7(other) is False  # type: ignore[arg-type]


def test_is_uuid7_refuses_uppercase() -> None:
    assert is_uuid7(str(uuid7()).upper()) is False


def _uuid7_by_parsing(value: str) -> bool:
    """The definition is_uuid7 implements: parses as a version-7 UUID and prints back as
    itself (its canonical text)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return parsed.version == 7 and str(parsed) == value


def test_is_uuid7_agrees_with_parsing() -> None:
    rng = random.Random(9562)
    hexdigits = "0123456789abcdefABCDEF-{}:xg \n\u0663"
    accepted = 0
    for _ in range(20000):
        base = list(str(uuid7()))
        for _ in range(rng.randrange(3)):  # a few characters changed, or none
            base[rng.randrange(len(base))] = rng.choice(hexdigits)
        text = "".join(base)
        if rng.random() < 0.05:
            text = rng.choice(["{" + text + "}", "urn:uuid:" + text, text.replace("-", "")])
        assert is_uuid7(text) == _uuid7_by_parsing(text), text
        accepted += is_uuid7(text)
    assert 2000 < accepted < 18000  # both answers were compared, often


def test_case_ids_match_the_crockford_pattern() -> None:
    for _ in range(200):
        case_id = new_case_id()
        assert CASE_ID.match(case_id), case_id
        assert len(case_id) == 27
        assert is_case_id(case_id)


def test_case_ids_are_unique_and_sort_by_creation() -> None:
    made = [new_case_id() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert made == sorted(made)


GOOD = "C01HV6Q4ZJ8P3W7B1M2N5R6S9TX"


def test_the_sample_case_id_is_well_formed() -> None:
    assert len(GOOD) == 27
    assert is_case_id(GOOD) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "C",
        "c" + GOOD[1:],  # lower-case prefix
        GOOD[:-1],  # 25 characters after C
        GOOD + "A",  # 27 characters after C
        GOOD[:-1] + "I",  # I, L, O and U are not Crockford base32
        GOOD[:-1] + "L",
        GOOD[:-1] + "O",
        GOOD[:-1] + "U",
        GOOD.lower(),
        "X" + GOOD[1:],
    ],
)
def test_is_case_id_refuses_malformed_ids(text: str) -> None:
    assert is_case_id(text) is False


def test_is_case_id_refuses_a_trailing_newline() -> None:
    assert is_case_id(GOOD + "\n") is False
