"""A home's memory belongs to the base model it was written into, on the real bundled model: opened with another
model's weights, the library, the command line and the server refuse in one line and nothing of the home
changes; `agentmem export` and `agentmem remember --jsonl` carry its facts, users and people to a new home on the
other model, where they are answered."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from agentmem import Fact, Memory
from agentmem.storage.base_model import OtherModel
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import Ledger

AUNT = "My aunt Wilhelmina Fairweather works as a beekeeper."
SHARED_FACT = Fact(subject="Oriel Vantongeren", relation="lives in", object="Nairobi")


def agentmem(*args, model=None, check=True):
    env = {**os.environ, "AGENTMEM_COV_SAMPLES": "40"}  # the other model's covariance, in seconds
    if model is not None:
        env["AGENTMEM_MODEL"] = str(model)
    p = subprocess.run([sys.executable, "-m", "agentmem", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"agentmem {args} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


def state(home):
    """The ledger's facts, versions and base model, and the store's files: what a refused open must not touch."""
    ledger = Ledger.open(Layout(home))
    try:
        rows = (ledger.facts(), ledger.latest_version(), ledger.base_model())
    finally:
        ledger.close()
    return rows, sorted(str(p.relative_to(home)) for p in (home / "store").rglob("*"))


@pytest.fixture(scope="module")
def tuned(model_dir, tmp_path_factory):
    """The bundled model with its final norm moved by a thousandth: a fine-tune's weights, answering as before."""
    folder = tmp_path_factory.mktemp("tuned") / "model"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns(".agentmem-*"))
    tensors = load_file(folder / "model.safetensors")
    tensors["model.norm.weight"] = tensors["model.norm.weight"] * 1.001
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_home_refuses_another_model_and_its_facts_move_to_a_new_home_on_it(tmp_path, tuned):
    home, new_home = tmp_path / "home", tmp_path / "new"
    with Memory.open(home) as mem:
        said = mem.observe([{"role": "user", "content": AUNT}], user_id="u1")
        assert mem.wait(timeout=900)
        shared_id = mem.remember([SHARED_FACT])[0]
        version = mem.version
    before = state(home)

    with pytest.raises(OtherModel):
        Memory.open(home, model=str(tuned))
    for args in (["ask", "What does my aunt do?", "--user", "u1"], ["sleep"],
                 ["serve", "--engine", "embedded", "--port", "8093", "--dev"]):
        p = agentmem(*args, "--home", home, model=tuned, check=False)
        assert p.returncode == 1, (args, p.stdout[-500:])
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("agentmem: this home's memory was written into the model at") and str(tuned) in last
    assert state(home) == before  # refused before anything was written

    exported = tmp_path / "facts.jsonl"
    agentmem("export", "--home", home, "--out", exported)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {line["id"] for line in lines} == {f.id for f in said} | {shared_id}
    assert all(line["user_id"] == "u1" for line in lines if line["id"] != shared_id)

    moved = json.loads(agentmem("remember", "--jsonl", exported, "--home", new_home, "--json", model=tuned).stdout)
    assert set(moved["ids"]) == {line["id"] for line in lines}
    with Memory.open(new_home, model=str(tuned), cov_samples=40) as mem:
        assert mem.ledger.aliases("u1") == {"aunt": "Wilhelmina Fairweather"}
        assert "beekeeper" in mem.ask("What does my aunt do?", user_id="u1").lower()
        assert "beekeeper" not in mem.ask("What does Wilhelmina Fairweather do?", user_id="u2").lower()
        assert "nairobi" in mem.ask("Where does Oriel Vantongeren live?").lower()
    with Memory.open(home) as mem:  # the old home on its own model, as it was
        assert mem.version == version and "nairobi" in mem.ask("Where does Oriel Vantongeren live?").lower()
