"""docker-compose.yml (and docker-compose.offline.yml over it), checked statically: valid against the
Compose Specification's JSON schema, builds that point at real Dockerfile stages, no secrets in the
file, health checks wherever something waits on health, Prometheus scraping every service, and one
port (nginx) in front of the gateway replicas. tests/compose runs the stack for real."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.helpers import COMPOSE_FILE, ROOT

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ADMIN_KEY|_AUTH$")
RAGWAY_SERVICES = {
    "gateway": 8000,
    "gateway-2": 8000,
    "model": 9101,
    "model-2": 9101,
    "model-gpu": 9101,
    "retrieval": 9102,
}
OFFLINE_FILE = ROOT / "docker-compose.offline.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def stages(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.MULTILINE | re.IGNORECASE))


def test_compose_file_validates_against_the_compose_specification(compose) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_catches_a_broken_compose_file(compose) -> None:
    """The vendored schema is strict enough to be worth checking against."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["healthcheck"]["retires"] = 3  # a typo
    schema = json.loads(SCHEMA.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft201909Validator)


def test_every_build_points_to_a_dockerfile_stage_that_exists(compose) -> None:
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert set(built) == {"gateway", "model", "model-gpu", "retrieval"}
    for name, build in built.items():
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert build["target"] in stages(dockerfile), f"{name}: no stage {build['target']} in {dockerfile}"


def test_no_secret_is_written_in_the_file(compose) -> None:
    """Every secret-looking value is a required ${VAR:?...} from .env, never a literal."""
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
        for key, value in environment.items():
            value = str(value)
            if SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(value)
                assert match and match.group(2) == ":?", f"{name}.{key} must be ${{VAR:?...}}, got {value!r}"
            if "://" in value and "@" in value:  # credentials inside a URL
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                if ":" in userinfo:
                    match = INTERPOLATION.fullmatch(userinfo.split(":", 1)[1])
                    assert match and match.group(2) == ":?", f"{name}.{key}: literal password in URL"


def test_every_variable_the_file_uses_is_documented_in_env_example(compose) -> None:
    text = json.dumps(compose)  # the parsed file: comments are not configuration
    used = {m.group(1) for m in INTERPOLATION.finditer(text)}
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert used - documented == set(), "add these to .env.example"
    required = {m.group(1) for m in INTERPOLATION.finditer(text) if m.group(2) == ":?"}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY", "RAGWAY_ADMIN_KEY"} <= required


def test_env_example_holds_no_secret_values() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if SECRET_NAME.search(key):
                assert value == "", f"{key} must be empty in .env.example"


def test_every_service_has_a_health_check_and_waits_only_on_healthy_ones(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency]
            # A profile-only service cannot be a dependency of one that always runs.
            if not service.get("profiles"):
                assert not services[dependency].get("profiles"), f"{name} -> {dependency}"


def test_state_lives_in_named_volumes(compose) -> None:
    declared = set(compose["volumes"])
    stateful = {
        "postgres": "/var/lib/postgresql/data",
        "qdrant": "/qdrant/storage",
        "redis": "/data",
        "retrieval": "/data",
        "milvus": "/var/lib/milvus",
        "grafana": "/var/lib/grafana",
        "prometheus": "/prometheus",
    }
    for name, target in stateful.items():
        mounts = dict(v.split(":")[1::-1] for v in compose["services"][name]["volumes"])
        assert mounts.get(target) in declared, f"{name}: {target} is not on a named volume"


def test_model_runs_on_cpu_by_default_and_on_gpus_in_the_gpu_profile(compose) -> None:
    services = compose["services"]
    assert "profiles" not in services["model"]
    assert services["model"]["build"]["target"] == "model-cpu"
    gpu = services["model-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "model-gpu"
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["milvus"]["profiles"] == ["milvus"]
    assert services["qdrant"]["profiles"] == ["qdrant"]  # the embedded engine is the default
    default = {n for n, s in services.items() if not s.get("profiles")}
    expected = {"proxy", "gateway", "gateway-2", "model", "model-2", "retrieval", "postgres", "redis"}
    assert default == expected | {"prometheus", "grafana"}


def test_gateway_is_wired_to_services_that_exist(compose) -> None:
    services = compose["services"]
    env = services["gateway"]["environment"]
    assert services["gateway-2"]["environment"] == env  # the replicas differ only in their volume
    model_default = INTERPOLATION.fullmatch(env["RAGWAY_MODEL_SERVICE_ADDR"]).group(3)
    for address in (model_default, env["RAGWAY_RETRIEVAL_SERVICE_ADDR"]):
        host, port = address.rsplit(":", 1)
        assert host in services
        assert services[host]["environment"][f"RAGWAY_{host.upper()}_PORT"] == port
    assert "@postgres:5432/" in env["RAGWAY_DATABASE_URL"] and "@redis:6379/" in env["RAGWAY_REDIS_URL"]
    retrieval = services["retrieval"]["environment"]
    assert INTERPOLATION.fullmatch(retrieval["RAGWAY_RETRIEVAL_QDRANT_URL"]).group(3) == ""  # embedded
    assert "RAGWAY_RETRIEVAL_QDRANT_URL=http://qdrant:6333" in ENV_EXAMPLE.read_text()
    assert retrieval["RAGWAY_RETRIEVAL_MILVUS_URI"] == "http://milvus:19530"


def test_prometheus_scrapes_every_ragway_service_on_its_metrics_port(compose) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for service, port in RAGWAY_SERVICES.items():
        assert f"{service}:{port}" in targets
        assert service in compose["services"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


@pytest.mark.parametrize("table_file", ["replicas.yaml", "models.yaml"])
def test_the_model_table_names_model_services_that_exist(compose, table_file: str) -> None:
    """deploy/models/*.yaml are valid model tables (as the gateway reads them) whose replicas are
    compose services listening on the model port, and the gateway mounts them where .env points:
    by default the bundled model on its two replicas, model and model-2."""
    from ragway.gateway.catalog.model_table import load_model_table

    services = compose["services"]
    for name in ("gateway", "gateway-2"):
        assert "./deploy/models:/etc/ragway/models:ro" in services[name]["volumes"]
    match = INTERPOLATION.fullmatch(services["gateway"]["environment"]["RAGWAY_MODELS_FILE"])
    assert match and match.group(3) == "/etc/ragway/models/replicas.yaml"
    example = ENV_EXAMPLE.read_text()
    assert re.search(r"^RAGWAY_MODELS_FILE=/etc/ragway/models/replicas.yaml$", example, re.MULTILINE)
    assert re.search(r"^#\s+RAGWAY_MODELS_FILE=/etc/ragway/models/models.yaml", example, re.MULTILINE)
    table = load_model_table(ROOT / "deploy" / "models" / table_file)
    assert table.models[0].replicas == ["model:50051", "model-2:50051"]
    for entry in table.models:
        for address in entry.replicas:
            host, port = address.rsplit(":", 1)
            assert host in services, f"{entry.name}: no service {host}"
            assert services[host]["environment"]["RAGWAY_MODEL_PORT"] == port
            if host not in ("model", "model-2"):  # more models than the default come with a profile
                assert services[host]["profiles"] == ["multi-model"]
                assert services[host]["deploy"]["resources"]["limits"]["memory"]


def test_users_reach_the_gateways_through_one_port_that_streams_unbuffered(compose) -> None:
    """nginx publishes the one port and balances over both gateway replicas; SSE passes unbuffered."""
    services = compose["services"]
    published = {name for name, s in services.items() if s.get("ports") and not s.get("profiles")}
    assert published == {"proxy", "prometheus", "grafana"}  # the last two: their own UIs
    assert services["proxy"]["ports"] == ["${RAGWAY_GATEWAY_PORT:-8000}:80"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    conf = NGINX_CONF.read_text()
    upstream = re.search(r"upstream gateways \{(.*?)\}", conf, re.DOTALL).group(1)
    assert re.findall(r"server (\S+):8000", upstream) == ["gateway", "gateway-2"]
    assert "proxy_buffering off;" in conf and "proxy_pass http://gateways;" in conf


def test_the_offline_override_swaps_only_images_for_local_stand_ins(compose) -> None:
    """docker-compose.offline.yml: every image it names is built by docker/offline/Dockerfile, and
    what it changes besides `image:` is Milvus' command and health check and moving the two
    observability services (no local stand-in) into a profile."""
    offline = yaml.safe_load(OFFLINE_FILE.read_text())["services"]
    stages_built = stages(ROOT / "docker" / "offline" / "Dockerfile")
    script = (ROOT / "docker" / "build_images.sh").read_text()
    for name, override in offline.items():
        assert name in compose["services"], name
        if "image" in override:
            stage = override["image"].split("/offline-", 1)[1].split(":")[0]
            assert stage in stages_built and stage in script, f"{name}: no stage {stage}"
        extra = set(override) - {"image"}
        if name == "milvus":
            assert extra == {"command", "healthcheck"}
        elif name in ("prometheus", "grafana"):
            assert override == {"profiles": ["observability"]}
        else:
            assert not extra, f"{name}: {extra}"
