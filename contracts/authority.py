"""PLACEHOLDER until the authority policy lands (same interface)."""

from __future__ import annotations

from dataclasses import dataclass

from lintas.contracts.envelope import Event


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class CaseState:
    pass


def start() -> CaseState:
    return CaseState()


def judge(state: CaseState, event: Event) -> Refusal | None:
    return None


def apply(state: CaseState, event: Event) -> CaseState:
    return state
