"""lintas.demo: simulated agency staff and the demo scenario, kept apart from the core."""

from lintas.demo.pathways import (
    PARTNER,
    PATHWAYS,
    VILLAGE,
    ExpectedHandoff,
    Pathway,
    agencies,
    check_record,
    pathway_of,
)
from lintas.demo.run import DemoRefused, DemoResult, DemoTimeout, demo_consumers, run_demo
from lintas.demo.staff import Reaction, react

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
