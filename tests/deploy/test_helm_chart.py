"""The Helm chart, linted and rendered by Helm's own Go SDK, and the rendered objects checked the
way a cluster would treat them: containers that would be refused or never become ready, Services
and budgets that select nothing, GPUs that are never requested."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.helpers import CHART, NAMESPACE, RELEASE, ROOT, production_values, render

GRPC_COMPONENTS = {"model": 50051, "retrieval": 50052}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    deployment = named(objects, "Deployment", f"{RELEASE}-{component}")
    [main] = deployment["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("values_file", ["default", "production"])
def test_chart_lints_clean_in_strict_mode(values_file: str) -> None:
    values = production_values() if values_file == "production" else None
    report = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_renders_the_three_services(rendered) -> None:
    deployments = {d["metadata"]["name"] for d in by_kind(rendered, "Deployment")}
    assert deployments == {f"{RELEASE}-gateway", f"{RELEASE}-model", f"{RELEASE}-retrieval"}
    assert len(by_kind(rendered, "ConfigMap")) == 3  # one per service, so no setting leaks across


def test_every_container_has_resources_probes_and_a_non_root_security_context(rendered) -> None:
    for template in pod_templates(rendered):
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{template['metadata']['labels']['app.kubernetes.io/component']}/{c['name']}"
            assert c["resources"].get("requests"), f"{where}: no resource requests"
            assert c["resources"].get("limits", {}).get("memory"), f"{where}: no memory limit"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{where}: no {probe}"
            security = {**pod_security, **c.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert "ALL" in c["securityContext"]["capabilities"]["drop"], where


def test_read_only_root_filesystem_leaves_tmp_home_and_data_writable(rendered) -> None:
    for template in pod_templates(rendered):
        [c] = template["spec"]["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/home/ragway"} <= mounted, c["name"]


def test_grpc_services_use_native_grpc_probes_on_their_grpc_port(rendered) -> None:
    for component, port in GRPC_COMPONENTS.items():
        c = container(rendered, component)
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in c["ports"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{component} {probe}"


def test_gateway_probes_are_healthz_and_readyz(rendered) -> None:
    c = container(rendered, "gateway")
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_model_startup_probe_allows_a_slow_engine_start(rendered) -> None:
    probe = container(rendered, "model")["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 600  # CPU compile is 1-2 min; GPUs longer


def test_every_service_selects_pods_that_exist_and_ports_they_expose(rendered) -> None:
    templates = pod_templates(rendered)
    services = by_kind(rendered, "Service")
    assert len(services) == 5  # gateway, model, model-headless, retrieval, retrieval-headless
    for service in services:
        selector = service["spec"]["selector"]
        matching = [t for t in templates if selects(selector, t["metadata"]["labels"])]
        assert matching, f"Service {service['metadata']['name']} selects no pods"
        containers = [c for t in matching for c in t["spec"]["containers"]]
        port_names = {p["name"] for c in containers for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']}: {port['targetPort']}"


def test_gateway_spreads_grpc_calls_over_model_replicas_through_a_headless_service(rendered) -> None:
    config = named(rendered, "ConfigMap", f"{RELEASE}-gateway")["data"]
    for component, port in GRPC_COMPONENTS.items():
        address = config[f"RAGWAY_{component.upper()}_SERVICE_ADDR"]
        service_name = f"{RELEASE}-{component}-headless"
        assert address == f"dns:///{service_name}.{NAMESPACE}.svc.cluster.local:{port}"
        headless = named(rendered, "Service", service_name)
        assert headless["spec"]["clusterIP"] == "None"
        model_pods = named(rendered, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]
        assert selects(headless["spec"]["selector"], model_pods["metadata"]["labels"])


def test_every_gateway_replica_reads_uploaded_files_from_postgresql_and_sees_each_model_pod(
    rendered, values_name
) -> None:
    """With PostgreSQL the gateway scales out, and its pods' /data is scratch: file bytes go to the
    database; each model's headless name is resolved again and again, every pod a replica."""
    config = named(rendered, "ConfigMap", f"{RELEASE}-gateway")["data"]
    assert config["RAGWAY_FILE_STORE"] == ("database" if values_name == "production" else "local")
    assert float(config["RAGWAY_DNS_REFRESH_SECONDS"]) > 0


def test_budgets_and_autoscalers_point_at_workloads_that_exist(rendered, values_name) -> None:
    templates = pod_templates(rendered)
    deployments = {d["metadata"]["name"] for d in by_kind(rendered, "Deployment")}
    for pdb in by_kind(rendered, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selects(selector, t["metadata"]["labels"]) for t in templates), pdb["metadata"]["name"]
    for hpa in by_kind(rendered, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        name = hpa["spec"]["scaleTargetRef"]["name"]
        # An HPA owns the replica count: the Deployment must not fight it on every upgrade.
        assert "replicas" not in named(rendered, "Deployment", name)["spec"]
    if values_name == "production":
        assert len(by_kind(rendered, "HorizontalPodAutoscaler")) == 3
        assert len(by_kind(rendered, "PodDisruptionBudget")) == 3


def test_gpu_values_request_nvidia_gpus_on_gpu_nodes() -> None:
    objects = render(production_values())
    model = named(objects, "Deployment", f"{RELEASE}-model")["spec"]["template"]["spec"]
    [c] = model["containers"]
    assert int(c["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]
    assert c["image"].endswith("ragway/model-gpu:0.1.0")
    assert model["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in model["tolerations"])


def test_default_values_run_on_cpu_without_gpus() -> None:
    c = container(render(), "model")
    assert "nvidia.com/gpu" not in str(c["resources"])
    assert c["image"] == "ragway/model-cpu:0.1.0"


def test_production_values_describe_the_scaled_out_shape() -> None:
    objects = render(production_values())
    gateway_hpa = named(objects, "HorizontalPodAutoscaler", f"{RELEASE}-gateway")
    assert gateway_hpa["spec"]["minReplicas"] >= 3
    gateway = container(objects, "gateway")
    env = {e["name"]: e for e in gateway["env"]}
    assert env["RAGWAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ragway-secrets",
        "key": "database-url",
    }
    retrieval_config = named(objects, "ConfigMap", f"{RELEASE}-retrieval")["data"]
    assert retrieval_config["RAGWAY_RETRIEVAL_QDRANT_URL"].startswith("http://qdrant.")
    # External stores: no volumes to pin a replica to, so no PVCs at all.
    assert by_kind(objects, "PersistentVolumeClaim") == []
    assert by_kind(objects, "Secret") == []  # everything comes from the existing Secret
    [ingress] = by_kind(objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-gateway", "port": {"name": "http"}}


def test_service_monitors_scrape_the_metrics_port_of_each_service() -> None:
    objects = render(production_values())
    monitors = by_kind(objects, "ServiceMonitor")
    assert len(monitors) == 3
    services = by_kind(objects, "Service")
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        [service] = [s for s in services if selects(selector, s["metadata"]["labels"])]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in port_names
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_embedded_stores_get_a_volume_and_a_single_replica() -> None:
    rendered = render()
    claims = {c["metadata"]["name"] for c in by_kind(rendered, "PersistentVolumeClaim")}
    assert claims == {f"{RELEASE}-gateway-data", f"{RELEASE}-retrieval-data"}
    for component in ("gateway", "retrieval"):
        deployment = named(rendered, "Deployment", f"{RELEASE}-{component}")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-{component}-data"
    assert by_kind(rendered, "Ingress") == [] and by_kind(rendered, "ServiceMonitor") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"retrieval": {"replicaCount": 3}}, "qdrant.url"),
        ({"retrieval": {"backend": "milvus", "autoscaling": {"enabled": True}}}, "milvus.uri"),
        ({"gateway": {"replicaCount": 2}}, "database.type postgresql"),
        ({"database": {"type": "postgresql"}}, "database.url"),
        ({"model": {"tensorParallelSize": 2}}, "model.gpu.count"),
        ({"secrets": {"existingSecret": "mine"}, "redis": {"url": "redis://:pw@redis:6379/0"}}, "redis.url"),
    ],
)
def test_values_that_would_deploy_something_broken_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


def test_an_external_store_lets_retrieval_scale() -> None:
    objects = render({"qdrant": {"url": "http://qdrant:6333"}, "retrieval": {"replicaCount": 3}})
    retrieval = named(objects, "Deployment", f"{RELEASE}-retrieval")
    assert retrieval["spec"]["replicas"] == 3
    assert "strategy" not in retrieval["spec"]
    claims = [c["metadata"]["name"] for c in by_kind(objects, "PersistentVolumeClaim")]
    assert claims == [f"{RELEASE}-gateway-data"]


@pytest.mark.parametrize(
    "values",
    [
        {"retrieval": {"backend": "pinecone"}},
        {"gateway": {"replicas": 3}},  # a typo for replicaCount
        {"model": {"dtype": "fp8-ish"}},
        {"securityContext": {"runAsNonRoot": False}},
        {"database": {"type": "postgresql", "url": "mysql://db/x"}},
    ],
)
def test_schema_rejects_invalid_values(values: dict[str, Any]) -> None:
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    report = helm_python.lint(str(CHART), values, strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"]), report


def test_credentials_land_in_the_secret_and_never_in_a_config_map() -> None:
    password = "s3cret-password"
    objects = render(
        {
            "database": {
                "type": "postgresql",
                "url": f"postgresql+psycopg://ragway:{password}@db:5432/ragway",
            },
            "redis": {"url": f"redis://:{password}@redis:6379/0"},
            "qdrant": {"url": "http://qdrant:6333", "apiKey": password},
            "gateway": {"replicaCount": 3},
        }
    )
    holders = {o["kind"] for o in objects if password in str(o)}
    assert holders == {"Secret"}
    gateway_env = {e["name"] for e in container(objects, "gateway")["env"]}
    assert {"RAGWAY_ADMIN_KEY", "RAGWAY_DATABASE_URL", "RAGWAY_REDIS_URL"} <= gateway_env


def test_tracing_endpoint_reaches_every_service_only_when_set(rendered, values_name) -> None:
    for component in ("gateway", "model", "retrieval"):
        data = named(rendered, "ConfigMap", f"{RELEASE}-{component}")["data"]
        assert data["OTEL_SERVICE_NAME"] == f"ragway-{component}"
        if values_name == "production":
            assert data["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")
        else:
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in data


def test_config_changes_roll_the_pods() -> None:
    before = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in by_kind(render(), "Deployment")
    }
    changed = render({"model": {"maxModelLen": 2048}})
    after = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in by_kind(changed, "Deployment")
    }
    assert all(before[name] != after[name] for name in before)


MODELS = {
    "models": [
        {
            "servedName": "small",
            "aliases": ["gpt-4o-mini"],
            "prices": {"prompt_per_1k": 0.0005, "completion_per_1k": 0.0015},
            "fallbacks": ["large"],
            "replicaCount": 2,
        },
        {
            "servedName": "large",
            "name": "/models/Qwen2.5-7B-Instruct",
            "image": {"repository": "ragway/model-gpu"},
            "gpu": {"count": 2},
            "tensorParallelSize": 2,
            "allow": ["usr_team"],
            "resources": {"requests": {"cpu": "8", "memory": "48Gi"}, "limits": {"memory": "64Gi"}},
        },
    ]
}


def test_a_list_of_models_lints_clean() -> None:
    report = helm_python.lint(str(CHART), MODELS, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_each_model_gets_its_own_deployment_services_resources_and_gpus() -> None:
    objects = render(MODELS)
    deployments = {d["metadata"]["name"] for d in by_kind(objects, "Deployment")}
    assert deployments == {
        f"{RELEASE}-gateway",
        f"{RELEASE}-model-small",
        f"{RELEASE}-model-large",
        f"{RELEASE}-retrieval",
    }
    small, large = container(objects, "model-small"), container(objects, "model-large")
    assert "nvidia.com/gpu" not in str(small["resources"]) and small["image"] == "ragway/model-cpu:0.1.0"
    assert (
        large["resources"]["limits"]["nvidia.com/gpu"] == 2
        and large["resources"]["requests"]["memory"] == "48Gi"
    )
    assert large["image"] == "ragway/model-gpu:0.1.0"
    assert named(objects, "Deployment", f"{RELEASE}-model-small")["spec"]["replicas"] == 2
    for served in ("small", "large"):
        config = named(objects, "ConfigMap", f"{RELEASE}-model-{served}")["data"]
        assert config["RAGWAY_MODEL_SERVED_NAME"] == served
        deployment = named(objects, "Deployment", f"{RELEASE}-model-{served}")
        [source] = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert source["configMapRef"]["name"] == f"{RELEASE}-model-{served}"
    assert named(objects, "ConfigMap", f"{RELEASE}-model-large")["data"]["RAGWAY_MODEL_NAME"].startswith(
        "/models/"
    )


def test_the_gateway_gets_the_model_table_rendered_from_the_list() -> None:
    from ragway.gateway.catalog.model_table import parse_model_table

    objects = render(MODELS)
    gateway_config = named(objects, "ConfigMap", f"{RELEASE}-gateway")["data"]
    assert "RAGWAY_MODEL_SERVICE_ADDR" not in gateway_config
    path = gateway_config["RAGWAY_MODELS_FILE"]
    gateway = named(objects, "Deployment", f"{RELEASE}-gateway")["spec"]["template"]["spec"]
    [mount] = [m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "models"]
    [volume] = [v for v in gateway["volumes"] if v["name"] == "models"]
    table_map = named(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    assert path == f"{mount['mountPath']}/models.yaml" and set(table_map) == {"models.yaml"}
    table = parse_model_table(yaml.safe_load(table_map["models.yaml"]), "chart")  # as the gateway reads it
    by_name = {m.name: m for m in table.models}
    assert by_name["small"].aliases == ["gpt-4o-mini"] and by_name["small"].fallbacks == ["large"]
    assert by_name["small"].prices is not None and by_name["large"].allow == ["usr_team"]
    for name, entry in by_name.items():
        [address] = entry.replicas
        service_name = f"{RELEASE}-model-{name}-headless"
        assert address == f"dns:///{service_name}.{NAMESPACE}.svc.cluster.local:50051"
        pods = named(objects, "Deployment", f"{RELEASE}-model-{name}")["spec"]["template"]
        assert selects(
            named(objects, "Service", service_name)["spec"]["selector"], pods["metadata"]["labels"]
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m[1].update(servedName="small"), "servedName small is given twice"),
        (lambda m: m[0].update(fallbacks=["huge"]), "fallback huge is not another model"),
        (lambda m: m[1].update(gpu={"count": 1}), "models[large]: tensorParallelSize"),
    ],
)
def test_a_broken_list_of_models_is_refused(change: Any, message: str) -> None:
    values = {"models": [dict(m) for m in MODELS["models"]]}
    change(values["models"])
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


def test_schema_rejects_a_model_name_kubernetes_cannot_use() -> None:
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(chart.merge_values({"models": [{"servedName": "Small_1"}]}))


def test_model_replicas_scale_on_a_queue_depth_the_model_service_exports() -> None:
    values = {"model": {"autoscaling": {"enabled": True}}}
    [hpa] = [
        o
        for o in by_kind(render(values), "HorizontalPodAutoscaler")
        if o["metadata"]["name"].endswith("-model")
    ]
    [metric] = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    assert name == "ragway_model_engine_waiting_requests"
    assert f'"{name}"' in (ROOT / "services/ragway/model/metrics.py").read_text()
