"""The shipped compose file, without a container engine: valid against the Compose
specification's JSON Schema (vendored in tests/fixtures/compose-spec), every lintas service
non-root, built from the repository, traced to Jaeger and scraped by Prometheus."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lintas.infra.deploy.config import PRODUCTION_DIR

SCHEMA = Path(__file__).resolve().parents[3] / "fixtures" / "compose-spec" / "compose-spec.json"
COMPOSE = PRODUCTION_DIR / "compose.yaml"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _lintas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _problems(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _problems(_compose()) == []


@pytest.mark.parametrize(
    ("where", "value"),
    [(("services", "kemlu", "restart"), 5), (("services", "platform", "volumes"), "ca.pem")],
)
def test_the_schema_check_sees_a_broken_file(where: tuple[str, ...], value: object) -> None:
    broken = copy.deepcopy(_compose())
    node = broken
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert _problems(broken) != []


def test_every_service_the_platform_needs_is_there() -> None:
    commands = {name: s["command"] for name, s in _lintas(_compose()).items()}
    assert commands["platform"] == ["run", "platform"]
    assert commands["reads"] == ["run", "reads"]
    assert commands["admission"] == ["run", "admission"]
    assert commands["watchdog"] == ["run", "watchdog"]
    assert commands["checkpointer"][:2] == ["checkpoint", "--every"]
    agencies = {name for name, command in commands.items() if command == ["run", name]}
    assert {
        "kp2mi",
        "kemlu",
        "dukcapil",
        "kemensos",
        "kemenpppa",
        "kemnaker",
        "kpai",
        "desa-3525012001",
        "my-jkm",
    } <= agencies


def test_lintas_services_are_built_here_run_unprivileged_and_traced_to_jaeger() -> None:
    compose = _compose()
    for name, service in _lintas(compose).items():
        assert service["build"]["dockerfile"] == "infra/deploy/production/Dockerfile", name
        assert service["user"] == "${LINTAS_UID:-10001}", name
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert env["OTEL_SERVICE_NAME"] == f"lintas-{name}", name
        assert env["LINTAS_METRICS_PORT"] == "9464", name
        assert env["LINTAS_METRICS_HOST"] == "0.0.0.0", name
        assert "9464/readyz" in " ".join(service["healthcheck"]["test"]), name
    for name, service in compose["services"].items():
        assert str(service.get("user", "")) not in ("0", "root"), name
    dockerfile = (PRODUCTION_DIR / "Dockerfile").read_text()
    assert "\nUSER 10001\n" in dockerfile
    # Every package pyproject.toml installs is copied into the image.
    for folder in ("contracts", "admission", "producers", "consumers", "infra", "cli", "demo"):
        assert f"\nCOPY {folder} {folder}\n" in dockerfile


def test_prometheus_scrapes_every_lintas_service_and_nothing_else() -> None:
    config = yaml.safe_load((PRODUCTION_DIR / "prometheus.yml").read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert sorted(targets) == sorted(f"{name}:9464" for name in _lintas(_compose()))
    prometheus = _compose()["services"]["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
