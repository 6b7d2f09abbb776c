"""Scraping a process's ``/metrics``, ``/healthz`` and ``/readyz`` as Prometheus would, over
real HTTP (urllib, in a thread: the event loop stays free for the bus)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_URL = re.compile(r"metrics on (http://\S+)/metrics")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError) as error:
        return 0, str(error)


async def get(url: str) -> tuple[int, str]:
    """Status and body (status 0: nothing listens)."""
    return await asyncio.to_thread(_get, url)


def metrics_url(line: str) -> str:
    """The base URL a process printed (``metrics on http://host:port/metrics ...``)."""
    found = _URL.search(line)
    assert found, line
    return found.group(1)


def parse(text: str) -> Samples:
    """Every sample: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(base: str) -> tuple[Samples, str]:
    status, body = await get(f"{base}/metrics")
    assert status == 200, body
    return parse(body), body


async def scrape_until(
    base: str, holds: Callable[[Samples], bool], what: str, within_s: float = 30.0
) -> tuple[Samples, str]:
    """Scrape until ``holds`` (another process's state, which announces nothing)."""
    body = ""
    try:
        async with asyncio.timeout(within_s):
            while True:
                samples, body = await scrape(base)
                if holds(samples):
                    return samples, body
                await asyncio.sleep(0.1)
    except TimeoutError:
        lintas = [line for line in body.splitlines() if line.startswith("lintas_")]
        raise AssertionError(f"never: {what}; last scrape:\n" + "\n".join(lintas)) from None


async def ready_until(base: str, status: int, within_s: float = 30.0) -> str:
    """``/readyz``'s body once it answers ``status``."""
    async with asyncio.timeout(within_s):
        while True:
            got, body = await get(f"{base}/readyz")
            if got == status:
                return body
            await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}")  # pragma: no cover
