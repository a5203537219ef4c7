"""Paths and the Helm chart rendered through Helm's own Go SDK (helm-python-sdk), for the
deployment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ragway"
PRODUCTION_VALUES = CHART / "values-production.yaml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
RELEASE = "ragway"
NAMESPACE = "ai"


def production_values() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render the chart and return every Kubernetes object it produces."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects
