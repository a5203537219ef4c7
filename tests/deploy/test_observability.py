"""The provisioned Grafana dashboard asks Prometheus only for series the services really export,
through the datasource that provisioning creates, and covers what an operator watches first:
time to first token, tokens/s, the queue, errors and spend."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from prometheus_client import REGISTRY

from tests.deploy.helpers import ROOT

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ragway.json"


def exported_series() -> set[str]:
    """Every series name the three services' metric modules expose (as Prometheus scrapes them)."""
    import ragway.gateway.core.metrics
    import ragway.model.metrics
    import ragway.retrieval.metrics  # noqa: F401 - importing registers the metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("ragway_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    return names


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_grouping = re.sub(r"\bby\s*\([^)]*\)", "", without_ranges)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping))
    return {w for w in words if w.startswith("ragway_")}


def test_every_dashboard_query_uses_a_series_the_services_export() -> None:
    exported = exported_series()
    for panel in panels():
        for target in panel["targets"]:
            missing = metric_names(target["expr"]) - exported
            assert not missing, f"panel {panel['title']!r} queries {missing}, which no service exports"


def test_dashboard_covers_ttft_tokens_queue_errors_and_spend() -> None:
    queried = {name for p in panels() for t in p["targets"] for name in metric_names(t["expr"])}
    for required in (
        "ragway_gateway_ttft_seconds_bucket",
        "ragway_model_ttft_seconds_bucket",
        "ragway_model_generation_tokens_total",
        "ragway_model_waiting_requests",
        "ragway_model_queue_seconds_bucket",
        "ragway_gateway_requests_total",
        "ragway_gateway_rejections_total",
        "ragway_gateway_spend_total",
    ):
        assert required in queried, required
    titles = " ".join(p["title"].lower() for p in panels())
    for topic in ("first token", "tokens / s", "queue", "error", "spend"):
        assert topic in titles, topic


def test_dashboard_uses_the_provisioned_prometheus_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [prometheus] = datasources["datasources"]
    assert prometheus["url"] == "http://prometheus:9090"
    for panel in panels():
        assert panel["datasource"]["uid"] == prometheus["uid"]
        assert all(t["datasource"]["uid"] == prometheus["uid"] for t in panel["targets"])


def test_dashboard_provider_loads_the_folder_compose_mounts(compose) -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ragway.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, panel["title"]
        cells |= area
