"""The generated permissions, read as nats-server reads them (no broker: see
tests/integration/infra/nats/test_access_enforced.py for the same rules enforced by a real
server)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lintas.infra.nats.access import (
    ACCOUNT,
    PARTNER_API,
    Access,
    AccessError,
    Grant,
    account_of,
    accounts_block,
    grant_for,
    is_own_reply,
    render_accounts,
)
from lintas.infra.nats.credentials import public_key, seed_path
from lintas.infra.nats.identities import accounts_path, ensure_local_identities, leaf_password_path
from lintas.infra.settings import Settings

KEY_A = "U" + "A" * 55
KEY_B = "U" + "B" * 55


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def may_publish(grant: Grant, subject: str) -> bool:
    allowed = any(_matches(p, subject) for p in grant.publish)
    return allowed and not any(_matches(p, subject) for p in grant.deny_publish)


def may_subscribe(grant: Grant, subject: str) -> bool:
    return any(_matches(p, subject) for p in grant.subscribe)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_the_matcher_matches_as_nats_does() -> None:
    assert _matches("lintas.kemlu.>", "lintas.kemlu.dukcapil.case.opened.C1")
    assert not _matches("lintas.kemlu.>", "lintas.kemlu")
    assert _matches("lintas.*.dukcapil.>", "lintas.kemlu.dukcapil.x.y.C1")
    assert not _matches("lintas.*.dukcapil.>", "lintas.dukcapil.kemlu.x.y.C1")
    assert not _matches("$JS.API.DIRECT.GET.KV_LINTAS_KEYS", "$JS.API.DIRECT.GET.LINTAS")


def test_an_agency_sends_only_as_itself_and_never_writes_the_log(settings: Settings) -> None:
    grant = grant_for("kemlu", settings)
    assert may_publish(grant, "lintas_intake.kemlu.C1")
    for other in ("dukcapil", "kp2mi", "desa-3525012001", "my-jkm"):
        assert not may_publish(grant, f"lintas_intake.{other}.C1")
    for subject in ("lintas.kemlu.dukcapil.case.opened.C1", "lintas.kemlu.all.case.closed.C1"):
        assert not may_publish(grant, subject)  # admission alone writes the log
    assert may_publish(grant_for("admission", settings), "lintas.kemlu.all.case.closed.C1")
    assert not may_publish(grant, "lintas_checkpoints.LINTAS")
    assert not may_publish(grant, "$KV.LINTAS_KEYS.kemlu")  # the registry is the platform's


def test_an_agency_uses_only_its_own_consumers_and_never_reads_the_stream(
    settings: Settings,
) -> None:
    grant = grant_for("desa-3525012001", settings)
    for own in ("agency-desa-3525012001", "sent-desa-3525012001"):
        assert may_publish(grant, f"$JS.API.CONSUMER.INFO.LINTAS.{own}")
        assert may_publish(grant, f"$JS.API.CONSUMER.MSG.NEXT.LINTAS.{own}")
        assert may_publish(grant, f"$JS.ACK.LINTAS.{own}.1.2.3.4.5")
        assert may_publish(grant, f"lintas_quarantine.{own}")
    refused = [
        "$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-dukcapil",
        "$JS.ACK.LINTAS.agency-dukcapil.1.2.3.4.5",
        "$JS.API.CONSUMER.CREATE.LINTAS",
        "$JS.API.CONSUMER.CREATE.LINTAS.mine",
        "$JS.API.CONSUMER.CREATE.LINTAS.mine.lintas.*.dukcapil.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.LINTAS.mine",
        "$JS.API.CONSUMER.DELETE.LINTAS.agency-dukcapil",
        "$JS.API.DIRECT.GET.LINTAS",
        "$JS.API.DIRECT.GET.LINTAS.lintas.kemlu.dukcapil.case.opened.C1",
        "$JS.API.STREAM.MSG.GET.LINTAS",
        "$JS.API.STREAM.INFO.LINTAS",  # a subjects_filter lists who wrote to whom
        "$JS.API.STREAM.DELETE.LINTAS",
        "lintas_quarantine.agency-dukcapil",
        "lintas_read.dukcapil.range",
    ]
    assert [s for s in refused if may_publish(grant, s)] == []
    assert may_publish(grant, "lintas_read.desa-3525012001.head")
    assert grant.subscribe == ("_INBOX.desa-3525012001.>",)
    assert not may_subscribe(grant, "lintas.kemlu.desa-3525012001.case.opened.C1")
    assert not may_subscribe(grant, "_INBOX.dukcapil.abc")


def test_an_agency_has_no_right_on_the_case_key_store_and_asks_custody(
    settings: Settings,
) -> None:
    """Only the platform writes the store; an agency reads its markers and own wraps
    through the custody service. A direct get is not granted even for its own wraps: a
    subject ending in a literal '>' or '*' token is a filter to the server."""
    grant = grant_for("kp2mi", settings)
    case, api = "C01JD3Z0000000000000000000", "$JS.API.DIRECT.GET.KV_LINTAS_CASE_KEYS"
    root = "$KV.LINTAS_CASE_KEYS"
    allowed = [
        "lintas_read.kp2mi.key",  # a marker or its own wrap, through custody
        "lintas_read.kp2mi.make-key",  # a case's first key
        "lintas_read.kp2mi.wrap-key",  # a wrap for an agency a consent names
        "$JS.API.STREAM.MSG.GET.KV_LINTAS_EXCHANGE_KEYS",  # others' X25519 public keys
    ]
    assert [s for s in allowed if not may_publish(grant, s)] == []
    refused = [
        f"{root}.{case}.1",  # make a case's data key itself
        f"{root}.{case}.1.kemensos",  # write a wrap itself
        f"{root}.{case}.1.kp2mi",
        f"{root}.{case}.erased",
        f"{api}.{root}.{case}.1",
        f"{api}.{root}.{case}.1.kp2mi",  # even its own wrap, by direct get
        f"{api}.{root}.{case}.>",  # a filter
        f"{api}.{root}.{case}.1.kemensos",  # another agency's wrap
        api,  # a get by sequence: the key would be in the body
        "$JS.API.STREAM.MSG.GET.KV_LINTAS_CASE_KEYS",
        "$JS.API.STREAM.INFO.KV_LINTAS_CASE_KEYS",  # its subjects: who holds which case
        "$JS.API.STREAM.MSG.DELETE.KV_LINTAS_CASE_KEYS",  # erasing is the platform's
        "$JS.API.STREAM.PURGE.KV_LINTAS_CASE_KEYS",
        "lintas_read.kemensos.key",  # asking as another agency
    ]
    assert [s for s in refused if may_publish(grant, s)] == []


def test_the_auditor_reads_the_log_and_checkpoints_and_publishes_nothing(
    settings: Settings,
) -> None:
    grant = grant_for("auditor", settings)
    for stream in ("LINTAS", "LINTAS_CHECKPOINTS", "KV_LINTAS_KEYS"):
        assert may_publish(grant, f"$JS.API.STREAM.INFO.{stream}")
        assert may_publish(grant, f"$JS.API.DIRECT.GET.{stream}")
        assert may_publish(grant, f"$JS.API.STREAM.MSG.GET.{stream}")
    writes = [
        "lintas.kemlu.dukcapil.case.opened.C1",
        "lintas_checkpoints.LINTAS",
        "lintas_quarantine.record",
        "$KV.LINTAS_KEYS.kemlu",
        "$JS.API.CONSUMER.CREATE.LINTAS.x",
        "$JS.API.STREAM.MSG.DELETE.LINTAS_QUARANTINE",
        "$JS.API.DIRECT.GET.LINTAS_QUARANTINE",
    ]
    assert [s for s in writes if may_publish(grant, s)] == []


def test_the_operator_reads_status_and_quarantine_only(settings: Settings) -> None:
    grant = grant_for("operator", settings)
    allowed = [
        "$JS.API.CONSUMER.INFO.LINTAS.agency-kemlu",
        "$JS.API.CONSUMER.LIST.LINTAS",
        "$JS.API.STREAM.LIST",  # takes no subjects filter
        "$JS.API.STREAM.INFO.LINTAS_QUARANTINE",  # its subjects name consumers only
        "$JS.API.DIRECT.GET.LINTAS_QUARANTINE",
        "$JS.API.STREAM.MSG.DELETE.LINTAS_QUARANTINE",
        "$JS.API.STREAM.INFO.KV_LINTAS_KEYS",  # lintas dlq retry opens the key bucket
        "lintas_read.operator.oldest-unacked",  # a consumer's lag
        "lintas_read.operator.stream-state",  # the event stream's numbers
    ]
    assert [s for s in allowed if not may_publish(grant, s)] == []
    refused = [
        "$JS.API.DIRECT.GET.LINTAS",
        "$JS.API.STREAM.MSG.GET.LINTAS",
        "$JS.API.STREAM.MSG.DELETE.LINTAS",
        "lintas.kemlu.dukcapil.case.opened.C1",
        "$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-kemlu",
        # A subjects filter in the body lists who wrote what to whom about which case...
        "$JS.API.STREAM.INFO.LINTAS",
        "$JS.API.STREAM.INFO.LINTAS_INTAKE",  # ...who sent what about which case...
        "$JS.API.STREAM.INFO.KV_LINTAS_CASE_KEYS",  # ...who holds which case's key
        "$JS.API.STREAM.INFO.KV_LINTAS_ADMITTED_IDS",  # every admitted event's id
        "$JS.API.STREAM.INFO.LINTAS_CHECKPOINTS",  # not needed
        "lintas_read.operator.head",  # the read service's agency reads
        "lintas_read.kemlu.head",
    ]
    assert [s for s in refused if may_publish(grant, s)] == []
    # Denied outright too, so that no later widening of the rule grants them by accident.
    for stream in ("LINTAS", "LINTAS_INTAKE", "KV_LINTAS_CASE_KEYS"):
        assert f"$JS.API.STREAM.INFO.{stream}" in grant.deny_publish


def test_the_platform_may_not_publish_events_nor_delete_the_log(settings: Settings) -> None:
    grant = grant_for("platform", settings)
    assert may_publish(grant, "$JS.API.STREAM.CREATE.LINTAS")
    assert may_publish(grant, "lintas_checkpoints.LINTAS")
    assert not may_publish(grant, "lintas.kemlu.dukcapil.case.opened.C1")
    assert not may_publish(grant, "$JS.API.STREAM.DELETE.LINTAS")
    assert not may_publish(grant, "$JS.API.STREAM.DELETE.LINTAS_CHECKPOINTS")


GUARDED = [
    f"$JS.API.STREAM.{action}.{stream}"
    for stream in ("LINTAS", "LINTAS_CHECKPOINTS")
    for action in ("UPDATE", "DELETE", "PURGE", "MSG.DELETE", "RESTORE")
]


@pytest.mark.parametrize(
    "identity", ["platform", "operator", "auditor", "watchdog", "kemlu", "desa-3525012001"]
)
def test_no_service_identity_may_shrink_the_log(settings: Settings, identity: str) -> None:
    grant = grant_for(identity, settings)
    for subject in GUARDED:
        assert not may_publish(grant, subject), (identity, subject)
    # ...while the quarantine and the case key store stay as they were.
    assert may_publish(grant_for("platform", settings), "$JS.API.STREAM.UPDATE.LINTAS_QUARANTINE")
    assert may_publish(grant_for("platform", settings), "$JS.API.STREAM.CREATE.LINTAS")


def test_the_break_glass_admin_may_shrink_the_log_but_publishes_no_event(
    settings: Settings,
) -> None:
    grant = grant_for("admin", settings)
    for subject in GUARDED:
        assert may_publish(grant, subject), subject
    assert not may_publish(grant, "lintas.kemlu.dukcapil.case.opened.C1")
    assert may_subscribe(grant, "_INBOX.admin.x")
    assert not may_subscribe(grant, "lintas.>")


def test_the_demo_staff_consumers_are_allowed_only_when_asked(settings: Settings) -> None:
    plain = grant_for("kemlu", settings)
    demo = grant_for("kemlu", settings, simulated_staff=True)
    subject = "$JS.API.CONSUMER.MSG.NEXT.LINTAS.staff-kemlu"
    assert not may_publish(plain, subject)
    assert may_publish(demo, subject)


def test_a_partner_abroad_lives_in_its_own_account(settings: Settings) -> None:
    assert account_of("my-jkm") == "PARTNER_MY_JKM"
    assert account_of("kemlu") == account_of("desa-3525012001") == ACCOUNT
    grant = grant_for("my-jkm", settings)
    assert may_publish(grant, f"{PARTNER_API}.CONSUMER.MSG.NEXT.LINTAS.agency-my-jkm")
    assert not may_publish(grant, "$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-my-jkm")

    access = Access(simulated_staff=False)
    access.add_nkey("kemlu", KEY_A)
    access.add_nkey("my-jkm", KEY_B)
    block = accounts_block(access, settings)
    assert set(block) == {ACCOUNT, "PARTNER_MY_JKM"}
    assert "jetstream" not in block["PARTNER_MY_JKM"]
    exports = block[ACCOUNT]["exports"]
    # Every export is private to the partner: each service is exactly one of the agency
    # rule's, and the one stream is its own inbox (admission's answers).
    assert {tuple(e["accounts"]) for e in exports} == {("PARTNER_MY_JKM",)}
    services = [e for e in exports if "service" in e]
    assert sorted(e["service"] for e in services) == sorted(
        grant_for("my-jkm", settings, api="$JS.API").publish
    )
    assert [e["stream"] for e in exports if "stream" in e] == ["_INBOX.my-jkm.>"]
    streaming = {e["service"] for e in services if e.get("response_type") == "stream"}
    assert streaming == {
        "$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-my-jkm",
        "$JS.API.CONSUMER.MSG.NEXT.LINTAS.sent-my-jkm",
    }
    imports = block["PARTNER_MY_JKM"]["imports"]
    renamed = {i["service"]["subject"]: i.get("to") for i in imports if "service" in i}
    assert [i["stream"] for i in imports if "stream" in i] == [
        {"account": ACCOUNT, "subject": "_INBOX.my-jkm.>"}
    ]
    assert renamed["$JS.API.CONSUMER.INFO.LINTAS.agency-my-jkm"] == (
        f"{PARTNER_API}.CONSUMER.INFO.LINTAS.agency-my-jkm"
    )
    assert renamed["lintas_intake.my-jkm.*"] is None  # the same subject on both sides
    assert "lintas.my-jkm.>" not in renamed  # the log is admission's to write
    text = render_accounts(access, settings)
    assert "# my-jkm" in text  # who each key is, for the reader
    assert "# kemlu" in text


def test_local_identities_keep_their_seeds_private_and_out_of_the_config(
    settings: Settings,
) -> None:
    added = ensure_local_identities(settings, ["kemlu", "my-jkm"])
    assert added == [
        "platform",
        "operator",
        "auditor",
        "admin",
        "watchdog",
        "admission",
        "kemlu",
        "my-jkm",
    ]
    assert ensure_local_identities(settings, ["kemlu"]) == []  # made once
    config = accounts_path(settings).read_text()
    for identity in added:
        seed = seed_path(settings, identity)
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.read_bytes().startswith(b"SU")
        assert seed.read_text() not in config
        assert public_key(seed) in config
    leaf = leaf_password_path(settings, "my-jkm")
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o600
    assert leaf.read_text().strip() not in (settings.auth_dir / "leafnodes.conf").read_text()


def test_the_description_round_trips_and_refuses_what_it_cannot_hold() -> None:
    access = Access(simulated_staff=True)
    assert access.add_nkey("kemlu", KEY_A)
    assert not access.add_nkey("kemlu", KEY_A)  # already there
    access.add_nkey("kemlu", KEY_B)  # a second key while rotating
    again = Access.from_json(access.to_json())
    assert again.identities["kemlu"].nkeys == [KEY_A, KEY_B]
    assert again.simulated_staff
    with pytest.raises(AccessError, match="already belongs to kemlu"):
        access.add_nkey("dukcapil", KEY_A)
    with pytest.raises(AccessError, match="not a NATS user public nkey"):
        access.add_nkey("dukcapil", "SUAAAA")
    with pytest.raises(AccessError, match="neither an agency id"):
        access.add_nkey("all", "U" + "C" * 55)
    with pytest.raises(AccessError, match="malformed"):
        Access.from_json({"identities": {"nobody here": {"nkeys": []}}})


def test_the_read_service_ranges_over_an_agencys_filters_or_one_case_of_them() -> None:
    from lintas.contracts import new_case_id
    from lintas.infra.reads import may_read_filter

    case = new_case_id()
    for allowed in (
        "lintas.*.kemensos.>",
        "lintas.*.all.>",
        "lintas.kemensos.>",
        f"lintas.*.all.*.*.{case}",  # the case's broadcasts: its consent book
        f"lintas.*.kemensos.*.*.{case}",
        f"lintas.kemensos.*.*.*.{case}",
        f"lintas.*.all.consent.withdrawn.{case}",
    ):
        assert may_read_filter("kemensos", allowed), allowed
    for refused in (
        "lintas.>",
        f"lintas.*.*.*.*.{case}",  # the whole case: others' events too
        f"lintas.*.dukcapil.*.*.{case}",
        f"lintas.kp2mi.*.*.*.{case}",
        "lintas.*.all.*.*.*",  # every case's broadcasts, one by one
        f"lintas.*.all.*.>.{case}",
        f"lintas.*.al*.*.*.{case}",
        f"lintas.*.all.*.*.{case}.x",
    ):
        assert not may_read_filter("kemensos", refused), refused


@pytest.mark.parametrize(
    ("identity", "reply", "imported", "answered"),
    [
        ("kemlu", "_INBOX.kemlu.1f2e.7", False, True),
        ("operator", "_INBOX.operator.abc", False, True),
        ("my-jkm", "_R_.AbC123.dEf", True, True),
        ("kemlu", "_INBOX.kp2mi.abc", False, False),  # another agency's inbox
        ("kemlu", "_INBOX.kemlu", False, False),
        ("kemlu", "_INBOX.kemlu.", False, False),
        ("kemlu", "_INBOX.kemlu..x", False, False),
        ("kemlu", "_INBOX.kemlu.x y", False, False),  # would break the answerer's PUB line
        ("kemlu", "_INBOX.kemlu.x\tPUB", False, False),
        ("kemlu", "_INBOX.kemlu.x\r\nPUB lintas.a 1", False, False),
        ("kemlu", "_INBOX.kemlu.*", False, False),
        ("kemlu", "_INBOX.kemlu.>", False, False),
        ("kemlu", "$KV.LINTAS_KEYS.kp2mi", False, False),  # the platform's buckets
        ("kemlu", "$JS.API.STREAM.PURGE.LINTAS_INTAKE", False, False),
        ("kemlu", "_R_.AbC123.dEf", False, False),  # a service import's, for partners only
    ],
)
def test_a_service_answers_only_on_a_literal_subject_of_the_askers_own(
    identity: str, reply: str, imported: bool, answered: bool
) -> None:
    assert is_own_reply(identity, reply, imported=imported) is answered
