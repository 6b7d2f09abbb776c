"""The deadline watchdog's test harness: a platform with watchdog replicas on a real bus, a
manual clock, and the deadlines the tests use."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from nats.js import JetStreamContext

from lintas.consumers.app import Databases, create_broker
from lintas.consumers.watchdog import Watchdog, attach_watchdog, watchdog_ticker
from lintas.contracts import Event, decode, new_case_id
from lintas.infra.clock import ManualClock
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.topology import watchdog_consumer
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import T0, Applied, consent, signed

DUE = T0 + timedelta(days=2)  # the referral's own due date
ESCALATE = DUE + timedelta(days=3)  # settings.escalate_referral below


@dataclasses.dataclass
class Replica:
    """One watchdog process: its consumer (on its own broker) and its ticker."""

    ticker: Watchdog
    applied: Applied
    stop: Any


class Platform:
    def __init__(self, url: str, js: JetStreamContext, settings: Settings) -> None:
        self.url, self.js, self.settings = url, js, settings
        self.kemlu = signed(js, settings, "kemlu")
        self.kp2mi = signed(js, settings, "kp2mi")
        self.kemenpppa = signed(js, settings, "kemenpppa")
        self.dukcapil = signed(js, settings, "dukcapil")
        self.kemensos = signed(js, settings, "kemensos")
        self.watchdog = signed(js, settings, "watchdog")
        self.clock = ManualClock(T0)
        self.replicas: list[Replica] = []

    async def start(
        self,
        settings: Settings | None = None,
        *,
        durable: str = "watchdog",
        applied: Applied | None = None,
    ) -> Replica:
        """``applied``: shared by replicas of one durable, which apply different batches."""
        settings = settings or self.settings
        databases = Databases(settings)
        broker = create_broker(self.url)
        applied = applied or Applied()
        attach_watchdog(
            broker,
            databases,
            settings,
            on_commit=[applied],
            verifier=Verifier(load_registry(self.settings)),
            spec=watchdog_consumer(durable),
        )
        await broker.start()
        # Each replica publishes on its own connection, as separate processes would.
        import nats

        nc = await nats.connect(self.url)
        publisher = Publisher(
            nc.jetstream(),
            "watchdog",
            stream=settings.stream,
            signer=self.watchdog.signer,
        )
        ticker = watchdog_ticker(databases, settings, publisher, clock=self.clock, consumer=durable)

        async def stop() -> None:
            await broker.stop()
            await nc.close()
            databases.dispose()

        replica = Replica(ticker, applied, stop)
        self.replicas.append(replica)
        return replica

    async def stop(self, replica: Replica) -> None:
        await replica.stop()
        self.replicas.remove(replica)

    async def open_case(self) -> str:
        case_id = new_case_id()
        await self.kemlu.publish(
            "case.opened",
            {
                "situation": "undocumented_abroad",
                "location": {"country": "MY", "subdivision": "MY-12"},
                "jurisdiction": {"country": "MY"},
                "risk_level": "high",
            },
            case_id=case_id,
            target="kp2mi",
            time=T0 - timedelta(hours=1),
        )
        # The parent's consent to the hand-offs these tests make (the consent gate's).
        await consent(
            self.kemlu,
            case_id,
            ["kp2mi", "kemenpppa", "dukcapil", "kemensos"],
            at=T0 - timedelta(minutes=30),
        )
        return case_id

    async def refer(self, case_id: str, referral_id: str = "ref-psy") -> None:
        await self.kp2mi.publish(
            "referral.requested",
            {
                "referral_id": referral_id,
                "service": "psychosocial_assessment",
                "due": DUE.isoformat(),
            },
            case_id=case_id,
            target="kemenpppa",
            time=T0,
        )

    async def events(self) -> list[tuple[int, Event, bytes]]:
        info = await self.js.stream_info(self.settings.stream)
        found = []
        for seq in range(1, info.state.last_seq + 1):
            raw = await self.js.get_msg(self.settings.stream, seq)
            found.append((seq, decode(raw.data or b"", subject=raw.subject), raw.data or b""))
        return found

    async def notices(self) -> list[Event]:
        return [e for _, e, _ in await self.events() if e.source == "watchdog"]
