"""The composition root of a lintas process: its parts, each built once, from its Settings.

Everything that takes a connection, a key or a registry gets it from here rather than
building it: the CLI, the demo, the consumer apps, the watchdog, ``lintas.producers.connect``
and the tests. What each part needs (credentials, TLS, the JetStream API prefix of a partner
abroad, the read service for an agency that may not read the stream, the registry a
verifier trusts and refreshes from) is decided in one place::

    parts = Parts(settings, url)            # url: open_bus(settings) or LINTAS_NATS_URL
    nc = await parts.connect("kemlu")       # as the agency, with its nkey and inbox
    js = parts.jetstream(nc, "kemlu")       # its JetStream API (a partner's is prefixed)
    reads = parts.reads(nc, js, "kemlu")    # the stream, or the read service on a secured bus
    signer = parts.signer("kemlu")          # its Ed25519 key, from the data directory
    verifier = await parts.verifier()       # files + LINTAS_KEYS, refreshed on unknown key ids
    verifier = parts.trust(registry)        # the same, from a registry read already
    keys = parts.case_keys(js, "kemlu")     # its access to the case key store
    tracer = parts.tracer_provider          # built on first use, shut down by close()
    publisher = await publisher_for(parts, nc, "kemlu", verifier)   # lintas.producers

Nothing here runs at import time, and nothing connects until asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from lintas.infra.keys.exchange import Recipients, trusted_recipients
from lintas.infra.keys.signing import Registry, Signer, Verifier
from lintas.infra.nats.bus import connect, registry_source
from lintas.infra.nats.credentials import js_options, uses_credentials
from lintas.infra.observability.telemetry import TracingOff, configure_tracing
from lintas.infra.privacy.casekeys import CaseKeys, case_keys_for
from lintas.infra.reads import DirectReads, ServiceReads, StreamReads
from lintas.infra.settings import Settings

__all__ = ["Parts"]


class Parts:
    """The parts of one lintas process on the bus at ``url``."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        service: str = "lintas",
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.url = url
        self.service = service
        self._tracer_provider = tracer_provider
        self._owned_tracer: SdkTracerProvider | TracingOff | None = None
        self._signers: dict[str, Signer] = {}
        self._verifiers: dict[str, Verifier] = {}
        self._recipients: Recipients | None = None

    # -- identities --------------------------------------------------------------------------

    def secured(self, identity: str) -> bool:
        """Whether ``identity`` logs in with its own nkey here (the bus then enforces its
        permissions: an agency may not read the stream, and asks the read service)."""
        return uses_credentials(self.settings, identity)

    async def connect(
        self, identity: str, *, name: str | None = None, reconnect_forever: bool = False
    ) -> Client:
        """A connection as ``identity`` (its nkey when this data directory holds one)."""
        return await connect(
            self.url,
            name or f"lintas-{identity}",
            settings=self.settings,
            identity=identity,
            reconnect_forever=reconnect_forever,
        )

    def jetstream(self, nc: Client, identity: str) -> Any:
        """``nc``'s JetStream context as ``identity`` sees the API (a partner abroad's
        account sees it under its own prefix)."""
        return nc.jetstream(**js_options(identity if self.secured(identity) else None))

    def reads(self, nc: Client, js: Any, identity: str) -> StreamReads:
        """Where ``identity`` reads case heads and stored events: the stream itself, or the
        platform's read service when the bus does not let it read the stream."""
        if identity != "platform" and self.secured(identity):
            return ServiceReads(nc, identity)
        return DirectReads(js, self.settings.stream)

    # -- keys --------------------------------------------------------------------------------

    def signer(self, agency: str) -> Signer:
        """``agency``'s signing key, from the data directory (loaded once)."""
        if agency not in self._signers:
            self._signers[agency] = Signer.load(self.settings, agency)
        return self._signers[agency]

    async def verifier(self, identity: str = "platform") -> Verifier:
        """A verifier trusting the shipped and local registry files and the ``LINTAS_KEYS``
        bucket, read as ``identity``, and reading them again when it meets a key id it does
        not hold. One per identity."""
        if identity not in self._verifiers:
            self.trust(await registry_source(self.url, self.settings, identity)(), identity)
        return self._verifiers[identity]

    def trust(self, registry: Registry, identity: str = "platform") -> Verifier:
        """``identity``'s verifier from now on: trusting ``registry`` (read already, e.g. by
        whoever declared the consumers), refreshed as :meth:`verifier`'s is."""
        refresh = registry_source(self.url, self.settings, identity)
        self._verifiers[identity] = Verifier(registry, refresh=refresh)
        return self._verifiers[identity]

    async def recipients(self, js: Any) -> Recipients:
        """The agencies' X25519 public keys: the local file and ``LINTAS_EXCHANGE_KEYS``."""
        if self._recipients is None:
            self._recipients = await trusted_recipients(self.settings, js)
        return self._recipients

    async def case_keys(self, js: Any, agency: str) -> CaseKeys:
        """``agency``'s access to the case key store, with its X25519 private key."""
        return case_keys_for(
            js,
            self.settings,
            agency,
            await self.recipients(js),
            verifier=await self.verifier(agency if self.secured(agency) else "platform"),
        )

    # -- tracing -----------------------------------------------------------------------------

    @property
    def tracer_provider(self) -> TracerProvider:
        """The process's tracer provider: the one given, else one built from the settings
        on first use (OTLP or the span file), which :meth:`close` shuts down."""
        if self._tracer_provider is None:
            self._owned_tracer = configure_tracing(self.settings, self.service)
            self._tracer_provider = self._owned_tracer
        return self._tracer_provider

    async def close(self) -> None:
        """Write the last spans of a tracer provider built here."""
        if self._owned_tracer is not None:
            await asyncio.to_thread(self._owned_tracer.shutdown)
            self._owned_tracer = None
