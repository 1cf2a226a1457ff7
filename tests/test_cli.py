"""The command line: remember, ask, complete, facts, history, forget, forget-user; one-line errors and exit codes."""

import json
import os
import subprocess
import sys

import pytest

FACT = {"subject": "Oriel Vantongeren", "relation": "lives in", "object": "Nairobi"}


def run(args, home, check=True):
    env = {**os.environ, "AGENTMEM_HOME": str(home)}
    p = subprocess.run([sys.executable, "-m", "agentmem", *args], capture_output=True, text=True, env=env, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"agentmem {args} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_remember_then_ask_in_a_new_process(home, tmp_path):
    f = tmp_path / "facts.jsonl"
    f.write_text(json.dumps(FACT) + "\n")
    out = json.loads(run(["remember", "--jsonl", str(f), "--json"], home).stdout)
    assert len(out["ids"]) == 1 and out["version"] >= 2
    answer = json.loads(run(["ask", "Where does Oriel Vantongeren live?", "--json"], home).stdout)
    assert "nairobi" in answer["answer"].lower()
    completion = run(["complete", "Oriel Vantongeren lives in"], home).stdout
    assert "nairobi" in completion.lower()
    facts = json.loads(run(["facts", "--json"], home).stdout)
    assert [r["object"] for r in facts] == ["Nairobi"] and facts[0]["status"] == "active"
    hist = json.loads(run(["history", facts[0]["id"], "--json"], home).stdout)
    assert hist[0]["kind"] == "received"


def test_forget_from_the_command_line(home):
    fid = json.loads(run(["facts", "--json"], home).stdout)[0]["id"]
    run(["forget", fid], home)
    assert json.loads(run(["facts", "--json"], home).stdout)[0]["status"] == "forgotten"
    assert "nairobi" not in run(["ask", "Where does Oriel Vantongeren live?"], home).stdout.lower()


def test_forget_user_from_the_command_line(home, tmp_path):
    f = tmp_path / "facts.jsonl"
    f.write_text(json.dumps({"subject": "User u7", "relation": "lives in", "object": "Tromso", "user_id": "u7"}) + "\n")
    run(["remember", "--jsonl", str(f)], home)
    assert [r["status"] for r in json.loads(run(["facts", "--user", "u7", "--json"], home).stdout)] == ["active"]
    out = json.loads(run(["forget-user", "u7", "--json"], home).stdout)
    assert out == {"forgotten_user": "u7", "facts": 1}
    assert json.loads(run(["facts", "--user", "u7", "--json"], home).stdout) == []  # not even its row is kept
    assert "tromso" not in run(["ask", "Where do I live?", "--user", "u7"], home).stdout.lower()


def test_bad_input_exits_non_zero_with_one_line(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**FACT, "object": ""}) + "\n")
    p = run(["remember", "--jsonl", str(bad)], home, check=False)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "object" in p.stderr
    p = run(["forget", "f_doesnotexist"], home, check=False)
    assert p.returncode != 0 and "no fact" in p.stderr
    p = run(["remember", "--jsonl", str(tmp_path / "missing.jsonl")], home, check=False)
    assert p.returncode != 0 and "missing.jsonl" in p.stderr
