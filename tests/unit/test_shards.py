"""Writer shards: each user's facts always go through one shard, and shards never fence, lock or clean up one
another (real Redis at 127.0.0.1:6379, real SQLite ledger)."""

import os
import uuid
from collections import Counter

import pytest
import redis

from agentmem.facts import SHARED, Fact
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import FencedOut, Ledger
from agentmem.writer.fact_queue import ShardedQueue
from agentmem.writer.shards import shard_of
from agentmem.writer.writer_lock import WriterLock

REDIS_URL = os.environ.get("AGENTMEM_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def client():
    c = redis.Redis.from_url(REDIS_URL)
    ns = f"agentmem-test-{uuid.uuid4().hex[:8]}"
    yield c, ns
    for key in c.scan_iter(ns + "*"):
        c.delete(key)


def test_a_users_shard_is_fixed_by_their_id_and_users_spread_over_the_shards():
    assert shard_of(SHARED, 4) == 0 and shard_of("u1", 1) == 0
    assert {shard_of("u1", 4) for _ in range(5)} == {shard_of("u1", 4)}
    spread = Counter(shard_of(f"user-{i}", 4) for i in range(2000))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 400


def test_each_fact_goes_to_its_users_stream(client):
    c, ns = client
    queue = ShardedQueue(c, ns, 4)
    facts = [Fact(subject=f"User u{i}", relation="lives in", object="Oslo", user_id=f"u{i}") for i in range(12)]
    facts.append(Fact(subject="Oslo", relation="is in", object="Norway"))
    touched = queue.put([(f.fact_id(), f) for f in facts])
    assert touched == {shard_of(f.scope, 4) for f in facts}
    for k in range(4):
        assert queue.shard(k).fact_ids() == {f.fact_id() for f in facts if shard_of(f.scope, 4) == k}
    assert queue.backlog() == 13 and queue.fact_ids() == {f.fact_id() for f in facts}


def test_two_shards_are_held_at_once_and_one_shard_by_one_writer(client):
    c, ns = client
    zero, one, one_again = WriterLock(c, ns, 5000, 0), WriterLock(c, ns, 5000, 1), WriterLock(c, ns, 5000, 1)
    assert zero.try_acquire() is not None and one.try_acquire() is not None
    assert one_again.try_acquire() is None


def test_a_shards_fencing_tokens_fence_only_that_shards_writers(tmp_path):
    ledger = Ledger.open(Layout(tmp_path))
    with ledger.transaction(fence=7, shard=1):
        pass
    with ledger.transaction(fence=2, shard=0):  # shard 0's writers count their own tokens
        pass
    with pytest.raises(FencedOut), ledger.transaction(fence=6, shard=1):
        pass
    with ledger.transaction(fence=7, shard=1):  # the same writer again
        pass
    ledger.close()


def test_a_writer_cleans_up_only_its_own_shards_staging(tmp_path):
    layout = Layout(tmp_path)
    for d in (layout.staging_for(None), layout.staging_for(3), layout.staging_for(4, 1), layout.staging_for(9, 2)):
        d.mkdir(parents=True)
    assert sorted(p.name for p in layout.staging_of_shard(0)) == ["embedded", "w3"]
    assert [p.name for p in layout.staging_of_shard(1)] == ["s1-w4"]
    assert [p.name for p in layout.staging_of_shard(2)] == ["s2-w9"]
