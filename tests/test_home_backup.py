"""Backup and restore on the real bundled model: a home written through two writer shards' Redis locks is copied
with `agentmem backup`, made into new homes with `agentmem restore` (its ledger in SQLite, and in PostgreSQL), where
every scope's facts are answered as before and can be forgotten and added to; the old home goes on by itself."""

import json
import os

import pytest
import redis

from agentmem import Fact, Memory
from agentmem.writer.writer_lock import LockBusy, WriterLock
from checks import agentmem

REDIS_URL = os.environ.get("AGENTMEM_TEST_REDIS", "redis://127.0.0.1:6379/0")
SHARED_FACT = Fact(subject="Oriel Vantongeren", relation="lives in", object="Nairobi")
# "I play the bassoon.", said by u4, whose facts go through writer shard 1 of 2 (the shared scope's: shard 0)
USER_FACT = Fact(subject="User u4", relation="plays the", object="bassoon", user_id="u4")
SHARDS = {"AGENTMEM_WRITER_SHARDS": "2", "AGENTMEM_REDIS_URL": REDIS_URL}
LATER = Fact(subject="Maren Okonkwo", relation="works at", object="Halden Shipping")


def answers(mem):
    return (mem.ask("Where does Oriel Vantongeren live?").lower(),
            mem.ask("What instrument do I play?", user_id="u4").lower(),
            mem.ask("What instrument do I play?", user_id="u2").lower())


def test_a_backup_restores_into_new_homes_that_answer_forget_and_learn(tmp_path, empty_postgres):
    home = tmp_path / "home"
    with Memory.open(home, redis_url=REDIS_URL, writer_shards=2) as mem:  # each scope through its shard's lock
        shared_id, user_id = mem.remember([SHARED_FACT, USER_FACT])
        shared, mine, theirs = answers(mem)
        assert "nairobi" in shared and "bassoon" in mine and "bassoon" not in theirs
        # while another process writes through shard 1, a backup waits for it: no copy is taken half-way
        with WriterLock(redis.Redis.from_url(REDIS_URL), mem.layout.namespace, shard=1).hold():
            with pytest.raises(LockBusy):
                mem.backup(tmp_path / "busy", wait=1)
        assert not (tmp_path / "busy").exists()
    manifest = json.loads(agentmem("backup", tmp_path / "backup", "--home", home, "--json", env=SHARDS).stdout)
    assert manifest["rows"]["facts"] == 2

    agentmem("restore", tmp_path / "backup", "--home", tmp_path / "new", "--json")
    agentmem("restore", tmp_path / "backup", "--home", tmp_path / "new-pg", "--json",
             env={"AGENTMEM_DATABASE_URL": empty_postgres})
    with Memory.open(tmp_path / "new-pg", database_url=empty_postgres) as mem:
        shared, mine, theirs = answers(mem)
        assert "nairobi" in shared and "bassoon" in mine and "bassoon" not in theirs
    with Memory.open(tmp_path / "new") as mem:
        shared, mine, theirs = answers(mem)
        assert "nairobi" in shared and "bassoon" in mine and "bassoon" not in theirs
        assert {r["id"] for r in mem.facts()} == {shared_id, user_id}
        mem.forget(shared_id)
        mem.remember([LATER])
        assert "nairobi" not in mem.ask("Where does Oriel Vantongeren live?").lower()
        assert "halden" in mem.ask("Where does Maren Okonkwo work?").lower()
    with Memory.open(home) as mem:  # the home the backup came from, untouched by what its copy did
        assert "nairobi" in mem.ask("Where does Oriel Vantongeren live?").lower()
        assert "halden" not in mem.ask("Where does Maren Okonkwo work?").lower()
