"""The command line's promise: every AGENTMEM_* variable of the contract is also a flag, and every failure ends in
one line on stderr with exit status 1 (a missing folder, an unknown device, a Redis that does not answer, a fault of
ours), without the model loading."""

import json
import sys
from pathlib import Path

import pytest
import redis
import typer
import typer.core

from agentmem.cli.app import app as commands_app, run as run_cli
from agentmem.facts import Fact
from agentmem.storage.layout import Layout
from agentmem.writer.fact_queue import ShardedQueue
from checks import agentmem

MODEL = {"remember", "ask", "complete", "forget", "forget-user", "move-to-users", "sleep", "chat", "demo", "backup",
         "serve", "worker", "api"}
WRITING = {"remember", "forget", "forget-user", "move-to-users", "sleep", "chat", "backup", "worker", "api"}


def test_every_command_takes_the_contracts_variables_as_flags():
    commands = typer.main.get_command(commands_app).commands
    # `eval`, mounted by agentmem/__main__.py once imported, is a group of benchmarks, not a command
    flags = {name: {o for p in c.params for o in p.opts} for name, c in commands.items()
             if not isinstance(c, typer.core.TyperGroup)}
    assert MODEL <= set(flags)
    assert all("--home" in f for f in flags.values()), flags
    assert [c for c in MODEL if not {"--model", "--device"} <= flags[c]] == []
    assert [c for c in WRITING if "--redis-url" not in flags[c]] == []
    assert [c for c in ("ask", "complete", "chat") if "--server-url" not in flags[c]] == []


@pytest.mark.parametrize("command", [["ask", "Where do I live?"], ["worker", "--redis-url", "redis://127.0.0.1:6379/15"]])
def test_the_device_flag_reaches_the_settings(command, tmp_path):
    p = agentmem(*command, "--device", "tpu", home=tmp_path / "home", clean=True, check=False)
    assert p.returncode == 1, p.stderr[-2000:]
    assert p.stderr.strip() == "agentmem: AGENTMEM_DEVICE: device must be 'cpu' or 'cuda', got 'tpu'"


def test_a_folder_that_cannot_be_a_home_is_named_in_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    p = agentmem("facts", home=tmp_path / "file" / "home", clean=True, check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("agentmem: ") and str(tmp_path / "file" / "home") in p.stderr


def run_app(command, monkeypatch, capsys):
    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: typer then expects the command's name
    monkeypatch.setattr(sys, "argv", ["agentmem", command.__name__.replace("_", "-")])
    with pytest.raises(SystemExit) as done:
        run_cli(app)
    assert done.value.code == 1
    return capsys.readouterr().err


def test_a_redis_that_does_not_answer_is_one_line(monkeypatch, capsys):
    def queue():
        redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1).ping()

    err = run_app(queue, monkeypatch, capsys)
    assert err.count("\n") == 1 and err.startswith("agentmem: Redis: ") and "127.0.0.1:1" in err, err


def test_a_fault_of_ours_is_one_line_that_names_where_its_traceback_was_kept(monkeypatch, capsys):
    def lookup():
        raise KeyError("no fact f_1")  # an expected failure: said as is, not as KeyError's repr

    def really_broken():
        return len(None)

    err = run_app(really_broken, monkeypatch, capsys)
    assert err.count("\n") == 1 and err.startswith("agentmem: internal error (TypeError): "), err
    kept = Path(err.rstrip().rsplit("traceback in ", 1)[1].rstrip(")"))
    try:
        assert "really_broken" in kept.read_text() and "len(None)" in kept.read_text()
    finally:
        kept.unlink()
    assert run_app(lookup, monkeypatch, capsys) == "agentmem: no fact f_1\n"


def test_status_shows_the_queue_of_every_shard_and_stays_up_while_redis_is_down(tmp_path):
    home, url = tmp_path / "home", "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    queue = ShardedQueue(client, Layout(home).namespace, 2)
    # one fact waiting for shard 0's writer (the shared scope), one for shard 1's (u4's)
    assert queue.put([("f_1", Fact(subject="Oslo", relation="is in", object="Norway")),
                      ("f_2", Fact(subject="User u4", relation="lives in", object="Oslo", user_id="u4"))]) == {0, 1}
    try:
        p = agentmem("status", "--redis-url", url, "--json", home=home, env={"AGENTMEM_WRITER_SHARDS": "2"},
                     clean=True)
        assert json.loads(p.stdout) == {"version": 0, "live": None, "facts": {}, "base_model": None, "night": None,
                                        "queue": 2}
        down = agentmem("status", "--redis-url", "redis://127.0.0.1:1/0", home=home, clean=True)
        assert "version 0, not served yet" in down.stdout and "queue: Redis: " in down.stdout, down.stdout
        agentmem("status", "--redis-url", url, home=tmp_path / "other", clean=True)
        assert set(client.keys(f"{Layout(tmp_path / 'other').namespace}*")) == set()  # looking made no queue
    finally:
        client.delete(*client.keys(f"{Layout(home).namespace}*"))


def test_remember_queue_needs_the_workers_redis_and_leaves_batches_to_them(tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps({"subject": "Oslo", "relation": "is in", "object": "Norway"}) + "\n")
    home = tmp_path / "home"
    p = agentmem("remember", "--jsonl", str(facts), "--queue", home=home, clean=True, check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "--redis-url" in p.stderr, p.stderr
    p = agentmem("remember", "--jsonl", str(facts), "--queue", "--batch", "2", "--redis-url",
                 "redis://127.0.0.1:6379/15", home=home, clean=True, check=False)
    assert p.returncode == 1 and "--batch" in p.stderr, p.stderr
    assert not home.exists()  # refused before the home was made


def test_users_lists_who_has_memory_without_the_model(tmp_path):
    from agentmem.storage.ledger import Ledger

    home = tmp_path / "home"
    ledger = Ledger.open(Layout(home))
    with ledger.transaction():
        for user in ("u9", "u3"):
            f = Fact(subject=f"User {user}", relation="lives in", object="Oslo", user_id=user)
            ledger.spool(f.fact_id(), f, "accepted")
    ledger.close()
    rows = json.loads(agentmem("users", "--json", home=home, clean=True).stdout)
    assert [(u["user_id"], u["facts"], u["version"], u["night"]) for u in rows] == [
        ("u3", {"spooled": 1}, 0, None), ("u9", {"spooled": 1}, 0, None)]
    assert agentmem("users", "--offset", "1", home=home, clean=True).stdout.startswith("u9  version 0  1 spooled")
    assert agentmem("users", home=tmp_path / "empty", clean=True).stdout.strip() == "(no users)"
