"""The command line: remember, ask, complete, facts, history, status, forget, forget-user; one-line errors and exit
codes."""

import json

import pytest

from checks import agentmem

FACT = {"subject": "Oriel Vantongeren", "relation": "lives in", "object": "Nairobi"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_remember_then_ask_in_a_new_process(home, tmp_path):
    f = tmp_path / "facts.jsonl"
    f.write_text(json.dumps(FACT) + "\n")
    out = json.loads(agentmem("remember", "--jsonl", str(f), "--json", home=home).stdout)
    assert len(out["ids"]) == 1 and out["version"] >= 2
    answer = json.loads(agentmem("ask", "Where does Oriel Vantongeren live?", "--json", home=home).stdout)
    assert "nairobi" in answer["answer"].lower()
    completion = agentmem("complete", "Oriel Vantongeren lives in", home=home).stdout
    assert "nairobi" in completion.lower()
    facts = json.loads(agentmem("facts", "--json", home=home).stdout)
    assert [r["object"] for r in facts] == ["Nairobi"] and facts[0]["status"] == "active"
    hist = json.loads(agentmem("history", facts[0]["id"], "--json", home=home).stdout)
    assert hist[0]["kind"] == "received"
    status = json.loads(agentmem("status", "--json", home=home).stdout)
    assert status["facts"] == {"active": 1} and status["version"] == out["version"] and status["night"] is None
    assert status["base_model"] is not None  # bound when the fact was written


def test_forget_from_the_command_line(home):
    fid = json.loads(agentmem("facts", "--json", home=home).stdout)[0]["id"]
    agentmem("forget", fid, home=home)
    assert json.loads(agentmem("facts", "--json", home=home).stdout)[0]["status"] == "forgotten"
    assert "nairobi" not in agentmem("ask", "Where does Oriel Vantongeren live?", home=home).stdout.lower()


def test_forget_user_from_the_command_line(home, tmp_path):
    f = tmp_path / "facts.jsonl"
    f.write_text(json.dumps({"subject": "User u7", "relation": "lives in", "object": "Tromso", "user_id": "u7"}) + "\n")
    agentmem("remember", "--jsonl", str(f), home=home)
    rows = json.loads(agentmem("facts", "--user", "u7", "--json", home=home).stdout)
    assert [r["status"] for r in rows] == ["active"]
    out = json.loads(agentmem("forget-user", "u7", "--json", home=home).stdout)
    assert out == {"forgotten_user": "u7", "facts": 1}
    assert json.loads(agentmem("facts", "--user", "u7", "--json", home=home).stdout) == []  # not even its row is kept
    assert "tromso" not in agentmem("ask", "Where do I live?", "--user", "u7", home=home).stdout.lower()


def test_bad_input_exits_non_zero_with_one_line(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**FACT, "object": ""}) + "\n")
    p = agentmem("remember", "--jsonl", str(bad), home=home, check=False)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "object" in p.stderr
    p = agentmem("forget", "f_doesnotexist", home=home, check=False)
    assert p.returncode != 0 and "no fact" in p.stderr
    p = agentmem("remember", "--jsonl", str(tmp_path / "missing.jsonl"), home=home, check=False)
    assert p.returncode != 0 and "missing.jsonl" in p.stderr
