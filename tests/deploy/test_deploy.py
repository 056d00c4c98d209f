"""Static checks of the deployment files in deploy/: no Docker, no cluster, no network needed."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
CONFIG_DIR = "/etc/avatar-callbacks"
CONFIG_PATH = f"{CONFIG_DIR}/callbacks.toml"
KEYS_PATH = f"{CONFIG_DIR}/keys.toml"
PORT = 8000

YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _design_env_names() -> set[str]:
    """The environment variable names docs/design.md pins (its `env` table row)."""
    for line in (ROOT / "docs" / "design.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| env |"):
            return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line))
    raise AssertionError("docs/design.md has no env row")


DESIGN_ENV = _design_env_names()


def _load_all(path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML file; each must be a mapping."""
    with path.open(encoding="utf-8") as fh:
        docs = [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
    return docs


def _k8s(kind: str, filename: str) -> dict[str, Any]:
    docs = [d for d in _load_all(K8S / filename) if d.get("kind") == kind]
    assert len(docs) == 1, f"{filename} should hold exactly one {kind}"
    return docs[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _check_config(config: dict[str, Any]) -> None:
    routes = config["routes"]
    assert routes, "the example config should define routes"
    for route in routes:
        for key in ("name", "path", "provider", "public_url"):
            assert isinstance(route.get(key), str), f"route {route} lacks {key}"
            assert route[key]
        assert route["path"].startswith("/")
        assert route["public_url"].startswith("https://"), "platforms call the public HTTPS URL"
        assert route["provider"] in {"sensetime", "metastudio"}
    assert len({r["name"] for r in routes}) == len(routes), "route names must be unique"
    assert len({r["path"] for r in routes}) == len(routes), "route paths must be unique"
    assert config["server"]["port"] == PORT
    # Containers must listen on every interface, or nothing outside can connect.
    assert config["server"]["host"] == "0.0.0.0"  # noqa: S104
    assert config["keys"]["file"] == KEYS_PATH


def _check_keys(keys: dict[str, Any], route_names: set[str]) -> None:
    """The key file's shape: [[keys]] tables with route, state and an obviously fake secret."""
    entries = keys["keys"]
    assert entries
    for entry in entries:
        assert entry["route"] in route_names
        assert entry["state"] in {"primary", "next", "previous"}
        assert entry["secret"].startswith("FAKE-"), "example keys must be obvious placeholders"
        assert len(entry["secret"]) <= 32, "the platforms' keys are at most 32 characters"
    for route in route_names:
        primaries = [e for e in entries if e["route"] == route and e["state"] == "primary"]
        assert len(primaries) == 1, f"route {route} needs exactly one primary key"


def _example_config() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "config" / "callbacks.toml").read_text(encoding="utf-8"))


def _configmap_config() -> dict[str, Any]:
    return tomllib.loads(_k8s("ConfigMap", "configmap.yaml")["data"]["callbacks.toml"])


# --- YAML -------------------------------------------------------------------------------------


def test_yaml_files_found() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert "compose.yaml" in names
    for name in (
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "pdb.yaml",
        "kustomization.yaml",
    ):
        assert f"kubernetes/{name}" in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    assert _load_all(path), f"{path.name} is empty"


# --- Docker Compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = _load_all(DEPLOY / "compose.yaml")
    return doc


RECEIVERS = ("receiver-1", "receiver-2")


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "migrate", *RECEIVERS, "nginx"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(
        str(v).endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"]
    )


def test_compose_migrate_is_one_shot_db_upgrade(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"][:2] == ["db", "upgrade"]
    assert CONFIG_PATH in migrate["command"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["volumes"] == [f"./config/callbacks.toml:{CONFIG_PATH}:ro"], "no keys needed"


@pytest.mark.parametrize("name", RECEIVERS)
def test_compose_receiver(compose: dict[str, Any], name: str) -> None:
    svc = compose["services"][name]
    assert str(PORT) in [str(p) for p in svc["expose"]]
    assert "ports" not in svc, "receivers are reached through nginx only"
    assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = svc["environment"]
    assert env["CALLBACKS_CONFIG"] == CONFIG_PATH
    assert env["CALLBACKS_STORE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["CALLBACKS_STORE_URL"]
    assert set(env) <= DESIGN_ENV, f"env names not in docs/design.md: {set(env) - DESIGN_ENV}"
    # Config and keys come read-only from deploy/config.
    assert f"./config:{CONFIG_DIR}:ro" in svc["volumes"]


def test_compose_env_names_everywhere(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name in {"postgres", "nginx"}:
            continue
        assert set(svc.get("environment", {})) <= DESIGN_ENV, name


def test_compose_nginx(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    assert [str(p) for p in nginx["ports"]] == ["443:443"]
    mounts = nginx["volumes"]
    assert any(m.startswith("./nginx/avatar-callbacks.conf:") for m in mounts)
    for receiver in RECEIVERS:
        assert receiver in nginx["depends_on"]


def test_compose_mounted_files_exist(compose: dict[str, Any]) -> None:
    assert (DEPLOY / "config" / "callbacks.toml").is_file()
    assert (DEPLOY / "config" / "keys.example.toml").is_file()
    assert (DEPLOY / "nginx" / "avatar-callbacks.conf").is_file()
    build = compose["services"]["receiver-1"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT.resolve()
    assert (context / build["dockerfile"]).is_file()


# --- example configuration --------------------------------------------------------------------


def test_example_config_parses() -> None:
    _check_config(_example_config())


def test_example_keys_are_placeholders() -> None:
    text = (DEPLOY / "config" / "keys.example.toml").read_text(encoding="utf-8")
    assert "chmod 600" in text
    routes = {r["name"] for r in _example_config()["routes"]}
    _check_keys(tomllib.loads(text), routes)


@pytest.mark.parametrize("which", ["compose", "kubernetes"])
def test_example_config_accepted_by_the_receiver(which: str) -> None:
    # The receiver's own loader, where it can be imported: unknown settings, bad routes or a
    # store URL it would refuse fail here rather than at the first deployment.
    config_module = pytest.importorskip("callbacks.config")
    data = _example_config() if which == "compose" else _configmap_config()
    config = config_module.parse_config(data, source=which, env={})
    assert [r.name for r in config.routes] == [r["name"] for r in data["routes"]]


@pytest.mark.parametrize("which", ["compose", "kubernetes"])
def test_example_keys_accepted_by_the_receiver(which: str) -> None:
    keyfile = pytest.importorskip("callbacks.keyfile")
    if which == "compose":
        text = (DEPLOY / "config" / "keys.example.toml").read_text(encoding="utf-8")
    else:
        text = _k8s("Secret", "secret.example.yaml")["stringData"]["keys.toml"]
    parsed = keyfile.parse_key_file(tomllib.loads(text), source=which)
    assert parsed.entries


def test_real_secrets_are_ignored_by_git() -> None:
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert {"config/keys.toml", ".env", "nginx/certs/"} <= set(ignored)


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return _k8s("Deployment", "deployment.yaml")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_k8s_deployment(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = _container(deployment)
    assert container["args"][:1] == ["serve"]
    assert CONFIG_PATH in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]


def test_k8s_probes_hit_named_port_8000(deployment: dict[str, Any]) -> None:
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == PORT
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_k8s_env(deployment: dict[str, Any]) -> None:
    env = _env(_container(deployment))
    assert set(env) <= DESIGN_ENV
    assert env["CALLBACKS_CONFIG"]["value"] == CONFIG_PATH
    ref = env["CALLBACKS_STORE_URL"]["valueFrom"]["secretKeyRef"]
    secret = _k8s("Secret", "secret.example.yaml")
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]


def test_k8s_writable_dirs_are_empty_dirs(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    multiproc = _env(container)["PROMETHEUS_MULTIPROC_DIR"]["value"]
    for path in ("/tmp", multiproc):
        assert path in mounts, f"{path} must be writable on a read-only root filesystem"
        assert "emptyDir" in volumes[mounts[path]]


def test_k8s_config_and_keys_mounted(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "subPath mounts never see Secret updates"
    sources = volumes[mount["name"]]["projected"]["sources"]
    (cm,) = [s["configMap"] for s in sources if "configMap" in s]
    (secret,) = [s["secret"] for s in sources if "secret" in s]
    assert cm["name"] == _k8s("ConfigMap", "configmap.yaml")["metadata"]["name"]
    assert {"key": "callbacks.toml", "path": "callbacks.toml"} in cm["items"]
    assert secret["name"] == _k8s("Secret", "secret.example.yaml")["metadata"]["name"]
    (keys_item,) = [i for i in secret["items"] if i["path"] == "keys.toml"]
    assert keys_item["mode"] in (0o400, 0o600), "the key file must not be readable by others"


def test_k8s_service_targets_http(deployment: dict[str, Any]) -> None:
    service = _k8s("Service", "service.yaml")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert port["targetPort"] == "http"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_k8s_pdb_matches_deployment(deployment: dict[str, Any]) -> None:
    pdb = _k8s("PodDisruptionBudget", "pdb.yaml")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_k8s_pods_migrate_before_the_receiver_starts(deployment: dict[str, Any]) -> None:
    """An init container runs `db upgrade`: a new pod waits for the schema, no crash loop."""
    pod = deployment["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    assert migrate["args"][:2] == ["db", "upgrade"]
    assert CONFIG_PATH in migrate["args"]
    assert migrate["image"] == _container(deployment)["image"]
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    assert migrate["securityContext"]["allowPrivilegeEscalation"] is False
    env = _env(migrate)
    assert set(env) <= DESIGN_ENV
    assert env["CALLBACKS_STORE_URL"] == _env(_container(deployment))["CALLBACKS_STORE_URL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in migrate["volumeMounts"]:
        assert "secret" not in str(volumes[mount["name"]]), "`db upgrade` needs no keys"
    assert any(m["mountPath"] == CONFIG_DIR for m in migrate["volumeMounts"])
    assert not list(K8S.glob("migrate-job*")), "one way to migrate: the init container"


def test_k8s_configmap_toml() -> None:
    _check_config(_configmap_config())


def test_k8s_example_secret() -> None:
    secret = _k8s("Secret", "secret.example.yaml")
    routes = {r["name"] for r in _configmap_config()["routes"]}
    _check_keys(tomllib.loads(secret["stringData"]["keys.toml"]), routes)
    assert "FAKE" in secret["stringData"]["store-url"]


def test_k8s_kustomization() -> None:
    (kustomization,) = _load_all(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    assert "secret.example.yaml" not in resources, "placeholder secrets must not be applied"
    for name in resources:
        assert (K8S / name).is_file()
    listed = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == set(resources)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_k8s_kustomize_builds() -> None:
    # `kubectl kustomize` renders locally; it needs neither a cluster nor the network.
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert kinds == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}


# --- Dockerfile -------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = _dockerfile_instructions()
    by_kind: dict[str, list[str]] = {}
    for keyword, rest in instructions:
        by_kind.setdefault(keyword, []).append(rest)

    assert any("python:3.11-slim" in a for a in by_kind["ARG"] + by_kind["FROM"])
    users = by_kind["USER"]
    assert users, "the image must switch to a non-root user"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert "EXPOSE" in by_kind
    assert str(PORT) in by_kind["EXPOSE"][-1].split()
    (healthcheck,) = by_kind["HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck, "python:3.11-slim has no curl"
    env = " ".join(by_kind["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    # A config without [server] host must listen on every interface in a container.
    assert "CALLBACKS_DEFAULT_HOST=0.0.0.0" in env
    command = " ".join(by_kind.get("ENTRYPOINT", []) + by_kind.get("CMD", []))
    for word in ("callbacks", "serve", "--config", CONFIG_PATH):
        assert f'"{word}"' in command
    assert any(".[postgres]" in r for r in by_kind["RUN"])
    assert any("/var/lib/avatar-callbacks" in r for r in by_kind["RUN"])


def test_dockerignore_next_to_dockerfile() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "**" in lines, "exclude everything not explicitly needed"
    for needed in ("pyproject.toml", "README.md", "verify/", "callbacks/"):
        assert f"!{needed}" in lines


# --- nginx ------------------------------------------------------------------------------------


def _nginx_text() -> str:
    text = (DEPLOY / "nginx" / "avatar-callbacks.conf").read_text(encoding="utf-8")
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_nginx_proxy_pass_has_no_uri_part() -> None:
    text = _nginx_text()
    upstreams = re.findall(r"\bupstream\s+(\w+)\s*\{", text)
    assert len(upstreams) == 1
    targets = re.findall(r"\bproxy_pass\s+([^;]+);", text)
    assert targets, "no proxy_pass"
    for target in targets:
        # `http://upstream` only: a path (even "/") makes nginx rebuild a normalised URI.
        assert target.strip() == f"http://{upstreams[0]}"
    assert not re.search(r"^\s*rewrite\s", text, re.MULTILINE), "never rewrite the request"


def test_nginx_upstream_has_both_receivers() -> None:
    text = _nginx_text()
    block = re.search(r"\bupstream\s+\w+\s*\{([^}]*)\}", text)
    assert block
    servers = re.findall(r"\bserver\s+([^\s;]+)", block.group(1))
    assert servers == [f"{r}:{PORT}" for r in RECEIVERS]


def test_nginx_limits_tls_and_metrics() -> None:
    text = _nginx_text()
    assert re.search(r"^\s*client_max_body_size\s+1m;", text, re.MULTILINE)
    assert re.search(r"^\s*listen\s+443\s+ssl\b", text, re.MULTILINE)
    assert re.search(r"^\s*ssl_certificate\s+\S+;", text, re.MULTILINE)
    assert re.search(r"^\s*ssl_certificate_key\s+\S+;", text, re.MULTILINE)
    assert "X-Forwarded-For" in text
    assert "X-Forwarded-Proto" in text
    assert re.search(r"^\s*proxy_cache\s+off;", text, re.MULTILINE)
    for directive in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        match = re.search(rf"^\s*{directive}\s+(\d+)s;", text, re.MULTILINE)
        assert match, directive
        assert int(match.group(1)) <= 30, f"{directive} should be short"
    metrics = re.search(r"location\s+(?:=|\^~)\s+/metrics\s*\{([^}]*)\}", text)
    assert metrics, "/metrics needs its own location"
    assert "deny all;" in metrics.group(1)
    assert "proxy_pass" not in metrics.group(1)


# --- systemd ----------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "avatar-callbacks.service"
EXEC_START = f"/opt/avatar-callbacks/bin/callbacks serve --config {CONFIG_PATH}"


def _unit() -> configparser.ConfigParser:
    # strict=False: systemd allows repeated keys (SystemCallFilter=); interpolation=None: "$" and
    # "%" are systemd's, not configparser's.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_systemd_unit_keys() -> None:
    unit = _unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["Type"] == "exec"
    assert service["User"] == "avatar-callbacks"
    assert service["ExecStart"] == EXEC_START
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/avatar-callbacks"
    assert service["StateDirectory"] == "avatar-callbacks"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_environment_names() -> None:
    # configparser keeps only the last of repeated keys: read the Environment= lines directly.
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    env = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in lines
        if line.startswith("Environment=")
    )
    assert env["CALLBACKS_LOG_FORMAT"] == "json"
    assert env["CALLBACKS_CONFIG"] == CONFIG_PATH
    assert set(env) <= DESIGN_ENV


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not on PATH"
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The ExecStart binary only exists once the package is installed in /opt/avatar-callbacks,
    # and `systemd-analyze verify` fails on a missing executable. Verify a copy whose ExecStart
    # runs /bin/true instead: everything else in the unit is checked as written.
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={EXEC_START}\n" in text
    copy = tmp_path / UNIT.name
    copy.write_text(
        text.replace("ExecStart=/opt/avatar-callbacks/bin/callbacks", "ExecStart=/bin/true"),
        encoding="utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown or misspelt settings are only warnings (exit status 0): fail on them too.
    complaints = [line for line in output.splitlines() if UNIT.name in line]
    assert not complaints, "\n".join(complaints)


# --- README -----------------------------------------------------------------------------------


def test_readme_explains_public_url() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "## The public URL and the route path behind a proxy" in text
    assert "https://hooks.example.com/callbacks/sensetime" in text
    assert "http://10.0.0.7:8000/callbacks/sensetime" in text
    assert re.search(r"docker build -f deploy/Dockerfile( -t \S+)? \.$", text, re.MULTILINE)
    for topic in ("public_url", "query string", "SQLite", "PostgreSQL", "Rotating keys"):
        assert topic in text
