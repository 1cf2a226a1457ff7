"""A backup holds the ledger's rows and the store's files as one moment, and restores into a new home on SQLite
or PostgreSQL: every fact, event, version, alias and night comes back, the new home's writers start without the
old one's fence tokens, facts that were on the old queue wait in the spool for the new one, new events follow
the copied ones, and nothing is written over a home that holds a memory."""

import json

import pytest

from agentmem.facts import Fact
from agentmem.storage.backup import restore, write
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import ACTIVE, QUEUED, SPOOLED, Ledger

DONE = Fact(subject="Thea Albescu", relation="lives in", object="Oslo")
AUNT = Fact(subject="User u1", relation="has an aunt named", object="Hilde Brandt", user_id="u1")
WAITING = Fact(subject="Elio Brennan", relation="works at", object="Hollin Labs")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("empty_postgres")


@pytest.fixture
def home(tmp_path):
    """A home with an edited fact, a user's aliased one, a queued one, a fence, a live version, files."""
    layout = Layout(tmp_path / "home")
    ledger = Ledger.open(layout)
    with ledger.transaction(fence=7):
        for fid, fact in (("f1", DONE), ("f2", AUNT)):
            ledger.spool(fid, fact, "accepted")
            ledger.start_edit(fid, fact)
            ledger.activate(fid, 1)
        ledger.bind_alias("u1", "aunt", "Hilde Brandt", "f2")
        ledger.add_version(1, "wake", facts=["f1", "f2"])
        ledger.spool("f3", WAITING, "accepted")
        ledger.set_status("f3", QUEUED, reason="handed to the queue")
        ledger.start_night("n1")
    ledger.set_live(1, server="s1")
    ledger.bind_base_model("abc123", "/models/smol")
    (layout.edits).mkdir(parents=True)
    (layout.edit_file("f1")).write_bytes(b"edit of f1")
    (layout.version_dir(1)).mkdir(parents=True)
    (layout.version_dir(1) / "manifest.json").write_text('{"version": 1}')
    (layout.store / "staging" / "w7").mkdir(parents=True)
    (layout.store / "staging" / "w7" / "half.safetensors").write_bytes(b"not committed")
    (layout.store / ".night-x").mkdir()
    yield layout, ledger
    ledger.close()


def files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_backup_restores_every_row_and_file_into_a_new_home(home, tmp_path, database_url):
    layout, ledger = home
    manifest = write(ledger, layout, tmp_path / "backup")
    assert manifest["rows"]["facts"] == 3 and manifest["base_model"]["fingerprint"] == "abc123"
    assert not (tmp_path / "backup" / "store" / "staging").exists()  # uncommitted files stay behind
    assert not (tmp_path / "backup" / "store" / ".night-x").exists()

    new = Layout(tmp_path / "new")
    restore(tmp_path / "backup", new, database_url)
    assert files(new.store) == {k: v for k, v in files(layout.store).items() if not k.startswith("staging")}
    back = Ledger.open(new, database_url)
    try:
        assert {r["id"]: r["status"] for r in back.facts()} == {"f1": ACTIVE, "f2": ACTIVE, "f3": SPOOLED}
        assert [e["kind"] for e in back.history("f1")] == [e["kind"] for e in ledger.history("f1")]
        assert back.aliases("u1") == {"aunt": "Hilde Brandt"} and back.latest_version() == 1
        assert back.night("n1")["finished"] is None and back.base_model() == ledger.base_model()
        assert back.live() is None  # no server of the new home has said what it serves
        with back.transaction(fence=1):  # the new home's first writer token is not older than the old home's
            back.forget("f1", version=2)
        seqs = [e["seq"] for e in back.history("f1")]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # the new event follows the copied ones
    finally:
        back.close()
    assert json.loads((tmp_path / "backup" / "backup.json").read_text())["home"] == str(layout.home)


def test_nothing_is_written_over_a_memory_or_an_existing_backup(home, tmp_path):
    layout, ledger = home
    write(ledger, layout, tmp_path / "backup")
    with pytest.raises(ValueError, match="exists"):
        write(ledger, layout, tmp_path / "backup")
    before = files(layout.store)
    with pytest.raises(ValueError, match="already holds a memory"):
        restore(tmp_path / "backup", layout)
    assert files(layout.store) == before and len(ledger.facts()) == 3
    with pytest.raises(ValueError, match="not an agentmem backup"):
        restore(tmp_path / "nothing", Layout(tmp_path / "new"))


def test_a_ledger_copy_goes_only_into_an_empty_ledger(home, tmp_path):
    _, ledger = home
    other = Ledger.open(Layout(tmp_path / "other"))
    try:
        with other.transaction():
            other.spool("g1", WAITING, "accepted")
        with pytest.raises(ValueError, match="already holds a memory"):
            ledger.copy_into(other)
        assert [r["id"] for r in other.facts()] == ["g1"]
    finally:
        other.close()
