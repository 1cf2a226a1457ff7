"""A home's memory belongs to the base model it was written into, on the real bundled model: opened with another
model's weights, the library, the command line and the server refuse in one line and nothing of the home
changes; `agentmem export` and `agentmem remember --jsonl` carry its facts, users and people to a new home on the
other model, where they are answered."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from agentmem import Fact, Memory
from agentmem.storage.base_model import OtherModel
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import Ledger
from checks import agentmem

AUNT = "My aunt Wilhelmina Fairweather works as a beekeeper."
SHARED_FACT = Fact(subject="Oriel Vantongeren", relation="lives in", object="Nairobi")


def agentmem_on(*args, model=None, check=True):
    env = {"AGENTMEM_COV_SAMPLES": "40"}  # the other model's covariance, in seconds
    if model is not None:
        env["AGENTMEM_MODEL"] = str(model)
    return agentmem(*args, env=env, check=check)


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


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """A home on the bundled model: u1's aunt (a named person and her job) and a shared fact, exported."""
    root = tmp_path_factory.mktemp("old")
    home = root / "home"
    with Memory.open(home) as mem:
        said = mem.observe([{"role": "user", "content": AUNT}], user_id="u1")
        assert mem.wait(timeout=900)
        shared_id = mem.remember([SHARED_FACT])[0]
        version = mem.version
    exported = root / "facts.jsonl"
    agentmem_on("export", "--home", home, "--out", exported)
    return {"home": home, "user_ids": {f.id for f in said}, "shared_id": shared_id, "version": version,
            "exported": exported}


def answers_in(home, model):
    with Memory.open(home, model=str(model), cov_samples=40) as mem:
        assert mem.ledger.aliases("u1") == {"aunt": "Wilhelmina Fairweather"}
        assert "beekeeper" in mem.ask("What does my aunt do?", user_id="u1").lower()
        assert "beekeeper" not in mem.ask("What does Wilhelmina Fairweather do?", user_id="u2").lower()
        assert "nairobi" in mem.ask("Where does Oriel Vantongeren live?").lower()


def test_a_home_refuses_another_model_and_its_facts_move_to_a_new_home_on_it(old, tmp_path, tuned):
    home = old["home"]
    before = state(home)
    with pytest.raises(OtherModel):
        Memory.open(home, model=str(tuned))
    for args in (["ask", "What does my aunt do?", "--user", "u1"], ["sleep"],
                 ["serve", "--engine", "embedded", "--port", "8093", "--dev"]):
        p = agentmem_on(*args, "--home", home, model=tuned, check=False)
        assert p.returncode == 1, (args, p.stdout[-500:])
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("agentmem: this home's memory was written into the model at") and str(tuned) in last
    assert state(home) == before  # refused before anything was written

    lines = [json.loads(line) for line in old["exported"].read_text().splitlines()]
    assert {line["id"] for line in lines} == old["user_ids"] | {old["shared_id"]}
    assert all(line["user_id"] == "u1" for line in lines if line["id"] != old["shared_id"])

    moved = json.loads(agentmem_on("remember", "--jsonl", old["exported"], "--home", tmp_path / "new", "--batch", 2,
                                "--json", model=tuned).stdout)
    assert moved["ids"] == [line["id"] for line in lines]
    answers_in(tmp_path / "new", tuned)
    with Memory.open(home) as mem:  # the old home on its own model, as it was
        assert mem.version == old["version"] and "nairobi" in mem.ask("Where does Oriel Vantongeren live?").lower()


@pytest.mark.full
def test_a_moved_memory_sleeps_as_it_arrives_and_is_answered_from_its_adapters(old, tmp_path, tuned):
    new = tmp_path / "new"
    moved = json.loads(agentmem_on("remember", "--jsonl", old["exported"], "--home", new, "--sleep-every", 2,
                                "--json", model=tuned).stdout)
    # u1's two facts, then a night (u1's), the shared fact, then a night (the shared scope's, and u1's again to
    # move its facts on a stage): each published
    first, second = moved["nights"]
    assert first["users"]["u1"]["outcome"] == "published" and first["facts"] == 0, first
    assert second["outcome"] == "published" and second["facts"] == 1, second
    assert all(u["outcome"] == "published" for u in second["users"].values()), second
    answers_in(new, tuned)
    # the same move begun again (after a stop, say): every fact is in already, so no night runs again
    again = json.loads(agentmem_on("remember", "--jsonl", old["exported"], "--home", new, "--sleep-every", 2,
                                "--json", model=tuned).stdout)
    assert again["ids"] == moved["ids"] and "nights" not in again and again["stats"]["edited"] == 0
