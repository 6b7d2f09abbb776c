"""lintas.demo: simulated agency staff and the demo scenario, kept apart from the core."""

from .pathways import (
    PARTNER,
    PATHWAYS,
    VILLAGE,
    ExpectedHandoff,
    Pathway,
    agencies,
    check_record,
    pathway_of,
)
from .run import DemoRefused, DemoResult, DemoTimeout, demo_consumers, run_demo
from .staff import Reaction, react

__all__ = [
    "PARTNER",
    "PATHWAYS",
    "VILLAGE",
    "DemoRefused",
    "DemoResult",
    "DemoTimeout",
    "ExpectedHandoff",
    "Pathway",
    "Reaction",
    "agencies",
    "check_record",
    "demo_consumers",
    "pathway_of",
    "react",
    "run_demo",
]
