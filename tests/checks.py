"""What several tests share: the command line run as a user runs it, Celery workers as processes, what a user would
find if they looked at the store after a run, and a shorter night."""

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from agentmem.edit.arch import for_model, num_layers
from agentmem.facts import SHARED
from agentmem.sleep.config import SleepConfig
from agentmem.storage.ledger import ACTIVE
from agentmem.storage.published import newest_user
from agentmem.storage.weights import WeightStore

# Less replayed text and fewer replayed answers than the defaults: a 12-fact night on the same path in 89 s of
# training, not 217, whose adapter alone answers 11 of 12 (docs/results/notes.md). The defaults' own figures
# are the benchmarks' (docs/RESULTS.md), not the suite's.
SHORT_NIGHT = SleepConfig(text_replay=8, replay_ratio=0.5)

ROOT = Path(__file__).resolve().parents[1]
# the contract's connections, which the model tests' conftest points at the test services
CONNECTIONS = ("AGENTMEM_DEVICE", "AGENTMEM_REDIS_URL", "AGENTMEM_SERVER_URL", "AGENTMEM_DATABASE_URL")
REDIS_URL = os.environ.get("AGENTMEM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def agentmem(*args, home=None, env=None, clean=False, check=True) -> subprocess.CompletedProcess:
    """`python -m agentmem ARGS` in a new process, with AGENTMEM_HOME=home and the variables in env; clean: without
    the contract's connections from this process's environment; check: a failure raises with its stderr."""
    environ = {k: v for k, v in os.environ.items() if not (clean and k in CONNECTIONS)}
    environ.update({"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})})
    if home is not None:
        environ["AGENTMEM_HOME"] = str(home)
    p = subprocess.run([sys.executable, "-m", "agentmem", *map(str, args)], capture_output=True, text=True,
                       env=environ, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"agentmem {args} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


class Workers:
    """Starts and kills `agentmem worker` processes for one home, on the Redis at `redis_url`."""

    def __init__(self, home: Path, redis_url: str = REDIS_URL):
        self.home, self.redis_url = home, redis_url
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, warm: bool = True, env: dict | None = None) -> subprocess.Popen:
        """Start a worker (with `env` added to its environment); with `warm`, wait until its first wake (which
        builds the editor) has run."""
        log = self.home / f"worker-{len(self.procs)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentmem", "worker", "--home", str(self.home),
             "--redis-url", self.redis_url, "--loglevel", "INFO"],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        self.procs.append((proc, log))
        deadline = time.monotonic() + 180
        # "ready" is logged after the worker_ready hook has loaded the model
        done = "wake: {" if warm else " ready."
        while done not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        return proc

    def logs(self) -> str:
        return "\n".join(log.read_text() for _, log in self.procs)

    def stop_all(self):
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def consistent(mem) -> None:
    """Every active fact applied exactly once, the training copy equal to base + the shared facts' edits, and
    each user's newest adapter equal to that user's edits."""
    store = WeightStore(mem.layout, mem.model_dir, for_model(mem.model),
                        for_model(mem.model).default_edit_layers(num_layers(mem.model)))
    rows = mem.ledger.facts(status=ACTIVE)
    active = [(r["id"], r["scale"]) for r in rows]
    assert store.edit_ids() == {fid for fid, _ in active}
    training = load_file(str(mem.home / "store" / "training" / "model.safetensors"))
    shared = [(r["id"], r["scale"]) for r in rows if r["scope"] == SHARED]
    for name, t in store.named(store.materialise(shared)).items():
        assert torch.equal(training[name], t), name
    for scope in {r["scope"] for r in rows} - {SHARED}:
        mine = [(r["id"], r["scale"]) for r in rows if r["scope"] == scope]
        zero = {l: torch.zeros_like(w) for l, w in store.base.items()}
        deltas = dict(newest_user(mem.layout, mem.ledger, scope).deltas())
        for name, t in store.named(store.materialise(mine, onto=zero)).items():
            torch.testing.assert_close(deltas[name], t, atol=1e-5, rtol=1e-4)
    for fid, _ in active:
        commits = [e for e in mem.history(fid) if e["kind"] == ACTIVE and e.get("version_added")]
        assert len(commits) == 1, (fid, mem.history(fid))
