"""The memory API (`agentmem api`): tokens, scoping by user, bad input, paths, metrics, logs, and a schemathesis run.

One Memory on the real bundled model and the real Redis at 127.0.0.1:6379
serves the whole module, with no worker: observed facts stay queued, which is
all these tests need (editing is covered by test_workers and test_faults).
"""

import io
import json
import logging
import os

import pytest
import redis
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from agentmem import Memory, cli
from agentmem.api import Tokens, create_app
from agentmem.config import Settings
from agentmem.logs import JsonFormatter
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import FORGOTTEN, QUEUED, REJECTED

REDIS_URL = os.environ.get("AGENTMEM_TEST_REDIS", "redis://127.0.0.1:6379/0")
ADMIN, ALICE, BOB = "admin-token-0123456789abcdef", "alice-token-0123456789abcdef", "bob-token-0123456789abcdef"
TOKENS = {ADMIN: "*", ALICE: "alice", BOB: "bob"}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def said(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def mem(tmp_path_factory):
    home = tmp_path_factory.mktemp("api") / "home"
    m = Memory.open(home, redis_url=REDIS_URL, api_tokens=TOKENS, api_max_body_bytes=64_000)
    try:
        m.redis.ping()
    except redis.ConnectionError as e:
        pytest.fail(f"these tests need the real Redis at {REDIS_URL}: {e}")
    yield m
    m.close()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(Layout(home).namespace + "*"):
        client.delete(key)


@pytest.fixture(scope="module")
def app(mem):
    return create_app(mem)


@pytest.fixture(scope="module")
def api(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def two_users(api):
    """One fact observed by alice and one by bob; their ids."""
    a = api.post("/v1/observe", json=said("I live in Lisbon."), headers=auth(ALICE))
    b = api.post("/v1/observe", json=said("My dog is called Biscuit."), headers=auth(BOB))
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    (fa,), (fb,) = a.json()["facts"], b.json()["facts"]
    assert fa["status"] == fb["status"] == QUEUED
    return fa["id"], fb["id"]


PROTECTED = [("get", "/v1/tokens"), ("post", "/v1/users/carol/tokens"), ("delete", "/v1/tokens/tok_1"), ("get", "/v1/facts"), ("post", "/v1/facts"), ("get", "/v1/status"), ("post", "/v1/observe"), ("get", "/v1/facts/f_1"),
             ("get", "/v1/facts/f_1/history"), ("delete", "/v1/facts/f_1"), ("post", "/v1/sleep"),
             ("post", "/v1/adapters"), ("get", "/metrics"), ("delete", "/v1/users/alice"), ("get", "/v1/users")]


def test_requests_without_or_with_a_wrong_token_are_refused(api):
    for method, path in PROTECTED:
        for headers in ({}, auth("wrong-token-0123456789abcdef"), auth(ADMIN[:-1]), {"Authorization": f"Basic {ADMIN}"},
                        {"Authorization": "Bearer"}):
            r = api.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
    for method, path in [("post", "/v1/sleep"), ("post", "/v1/adapters"), ("get", "/metrics"), ("get", "/v1/users"),
                         ("post", "/v1/users/alice/tokens")]:
        r = api.request(method, path, headers=auth(ALICE), json={"path": "x"})
        assert r.status_code == 403, (path, r.text)
    assert api.get("/health").json()["status"] == "ok"
    assert api.get("/v1/facts", headers=auth(ALICE)).status_code == 200


def test_the_api_refuses_to_start_without_a_token(tmp_path):
    with pytest.raises(ValueError, match="AGENTMEM_API_TOKENS"):
        Tokens({}, dev=False)
    assert Tokens({}, dev=True).check(None).user_id is None  # a dev run: every request is an operator's
    assert not Tokens(TOKENS, dev=True).dev  # tokens, when there are some, apply even with --dev
    with pytest.raises(ValueError, match="at least 16") as short:
        Settings(api_tokens={"hunter2": "alice"})
    assert "hunter2" not in str(short.value)  # a refused token is not printed
    env = {"AGENTMEM_API_TOKENS": None}
    r = CliRunner().invoke(cli.app, ["api", "--home", str(tmp_path)], env=env)
    assert r.exit_code == 1 and "AGENTMEM_API_TOKENS" in r.stderr and "--dev" in r.stderr, r.output
    assert not (tmp_path / "ledger.sqlite").exists()  # refused before anything was opened
    r = CliRunner().invoke(cli.app, ["api", "--home", str(tmp_path), "--dev", "--host", "0.0.0.0"], env=env)
    assert r.exit_code == 1 and "loopback" in r.stderr, r.output


def test_one_user_cannot_see_or_forget_another_users_facts(api, mem, two_users):
    alice_fact, bob_fact = two_users
    mine = api.get("/v1/facts", headers=auth(ALICE)).json()
    assert [f["id"] for f in mine] == [alice_fact] and mine[0]["object"] == "Lisbon"
    for method, path in [("get", f"/v1/facts/{alice_fact}"), ("get", f"/v1/facts/{alice_fact}/history"),
                         ("delete", f"/v1/facts/{alice_fact}")]:
        r = api.request(method, path, headers=auth(BOB))
        # exactly what a fact that does not exist answers
        assert r.status_code == 404 and r.json() == {"detail": f"no fact with id {alice_fact!r}"}, (path, r.text)
    assert mem.ledger.get(alice_fact)["status"] == QUEUED
    assert api.get("/v1/facts", params={"user_id": "alice"}, headers=auth(BOB)).status_code == 403
    r = api.post("/v1/observe", json={**said("I live in Oslo."), "user_id": "alice"}, headers=auth(BOB))
    assert r.status_code == 403
    assert [f["user_id"] for f in mem.facts()] == ["alice", "bob"]
    bob_status = api.get("/v1/status", headers=auth(BOB)).json()
    assert bob_status["facts"] == {QUEUED: 1} and bob_status["mode"] == "redis"

    # an operator acts for anyone, and must say for whom it observes
    assert {f["id"] for f in api.get("/v1/facts", headers=auth(ADMIN)).json()} == {alice_fact, bob_fact}
    only = api.get("/v1/facts", params={"user_id": "bob"}, headers=auth(ADMIN)).json()
    assert [f["id"] for f in only] == [bob_fact]
    assert api.post("/v1/observe", json=said("I live in Oslo."), headers=auth(ADMIN)).status_code == 403
    assert api.get(f"/v1/facts/{alice_fact}", headers=auth(ADMIN)).status_code == 200

    events = api.get(f"/v1/facts/{alice_fact}/history", headers=auth(ALICE)).json()
    assert [e["kind"] for e in events][:2] == ["received", "spooled"]
    r = api.delete(f"/v1/facts/{alice_fact}", headers=auth(ALICE))
    assert r.status_code == 200 and r.json()["forgotten"] == alice_fact, r.text
    assert mem.ledger.get(alice_fact)["status"] == FORGOTTEN
    assert mem.ledger.get(bob_fact)["status"] == QUEUED


def test_a_user_forgets_themselves_at_once_and_nobody_else(api, mem, two_users):
    alice_fact, bob_fact = two_users
    assert api.delete("/v1/users/bob", headers=auth(ALICE)).status_code == 403
    assert mem.ledger.get(bob_fact) is not None
    r = api.post("/v1/observe", json={**said("I live in Quito."), "user_id": "carol"}, headers=auth(ADMIN))
    assert r.status_code == 200 and mem.facts(user_id="carol")
    r = api.delete("/v1/users/carol", headers=auth(ADMIN))
    assert r.status_code == 200 and r.json() == {"forgotten_user": "carol", "facts": 1}, r.text
    r = api.delete("/v1/users/alice", headers=auth(ALICE))
    assert r.status_code == 200 and r.json()["facts"] >= 1, r.text
    assert mem.facts(user_id="alice") == mem.facts(user_id="carol") == [] and mem.ledger.get(alice_fact) is None
    assert api.get("/v1/facts", headers=auth(ALICE)).json() == []
    assert mem.ledger.get(bob_fact) is not None and api.get("/v1/facts", headers=auth(BOB)).json()


def stated(*facts, user_id=None) -> dict:
    return {"facts": [dict(zip(("subject", "relation", "object"), f)) for f in facts],
            **({"user_id": user_id} if user_id else {})}


def test_facts_stated_directly_are_screened_and_queued_in_the_callers_scope_only(api, mem):
    r = api.post("/v1/facts", json=stated(("User alice", "lives in", "Ghent"),
                                          ("Ysolde Marchetti", "works as", "a luthier")), headers=auth(ALICE))
    assert r.status_code == 202, r.text
    assert r.json()["user_id"] == "alice" and [f["status"] for f in r.json()["facts"]] == [QUEUED, QUEUED]
    ids = [f["id"] for f in r.json()["facts"]]
    assert [mem.ledger.get(i)["user_id"] for i in ids] == ["alice", "alice"]
    again = api.post("/v1/facts", json=stated(("User alice", "lives in", "Ghent")), headers=auth(ALICE)).json()
    assert again["facts"][0]["id"] == ids[0] and again["facts"][0]["status"] == QUEUED  # not queued twice
    assert mem.queue.backlog() >= 2

    # a secret is refused and kept redacted; the fact beside it still goes
    r = api.post("/v1/facts", json=stated(("User alice", "has a bank PIN of", "4821"), ("User alice", "likes", "okra")),
                 headers=auth(ALICE))
    (pin, okra) = r.json()["facts"]
    assert pin["status"] == REJECTED and "PIN" in pin["reason"] and okra["status"] == QUEUED, r.text
    assert "4821" not in json.dumps(mem.ledger.get(pin["id"]))

    # an operator states shared facts, or a named user's; a user writes nowhere but their own memory
    r = api.post("/v1/facts", json=stated(("Kessrin Lighthouse", "is located in", "Harstad")), headers=auth(ADMIN))
    assert r.status_code == 202 and r.json()["user_id"] is None, r.text
    assert mem.ledger.get(r.json()["facts"][0]["id"])["scope"] == ""
    r = api.post("/v1/facts", json=stated(("User bob", "likes", "figs"), user_id="bob"), headers=auth(ADMIN))
    assert r.status_code == 202 and mem.ledger.get(r.json()["facts"][0]["id"])["user_id"] == "bob"
    before = len(mem.facts())
    assert api.post("/v1/facts", json=stated(("User bob", "likes", "pears"), user_id="bob"),
                    headers=auth(ALICE)).status_code == 403
    # another user's keyed identity refuses the whole request, the good fact beside it too
    r = api.post("/v1/facts", json=stated(("User alice", "likes", "plums"), ("User bob", "lives in", "Oslo")),
                 headers=auth(ALICE))
    assert r.status_code == 400 and "subject" in r.json()["detail"] and "User bob" in r.json()["detail"], r.text
    bad = [{"facts": []}, {"facts": [{"subject": "X", "relation": "likes"}]},
           {"facts": [{"subject": "X", "relation": "likes", "object": "figs", "id": "f_mine"}]},
           {"facts": [{"subject": "X", "relation": "likes", "object": "figs", "user_id": "bob"}]},
           {"facts": [{"subject": "X", "relation": "likes", "object": "f" * 101}]},
           {"facts": [{"subject": "X", "relation": "likes", "object": "figs"}] * 101}]
    for body in bad:
        assert api.post("/v1/facts", json=body, headers=auth(ALICE)).status_code == 422, body
    r = api.post("/v1/facts", json={"facts": [{"subject": "Ysolde Marchetti", "relation": "plays", "object": "viola",
                                               "prompt": "Ysolde plays the"}]}, headers=auth(ALICE))
    assert r.status_code == 400 and "prompt" in r.json()["detail"], r.text
    past = {"subject": "User alice", "relation": "is planning to", "object": "fly to Quito", "expires": "2020-01-01"}
    r = api.post("/v1/facts", json={"facts": [past]}, headers=auth(ALICE))
    assert r.status_code == 400 and "'expires' is in the past" in r.json()["detail"], r.text
    assert len(mem.facts()) == before
    r = api.post("/v1/facts", json={"facts": [{**past, "expires": "2099-05-01T12:00:00Z"}]}, headers=auth(ALICE))
    assert r.status_code == 202, r.text
    listed = api.get(f"/v1/facts/{r.json()['facts'][0]['id']}", headers=auth(ALICE)).json()
    assert listed["expires"] == 4081320000.0  # kept as Unix seconds, and shown


def test_past_a_users_quota_writes_are_429_and_record_nothing_until_room_comes_back(api, mem, monkeypatch):
    monkeypatch.setattr(mem.settings, "user_facts_per_hour", 3)
    as_dora = {"user_id": "dora"}
    r = api.post("/v1/facts", json=stated(("User dora", "likes", "figs"), ("User dora", "likes", "plums"), **as_dora),
                 headers=auth(ADMIN))
    assert r.status_code == 202, r.text
    r = api.post("/v1/facts", json=stated(("User dora", "likes", "pears"), ("User dora", "likes", "dates"), **as_dora),
                 headers=auth(ADMIN))
    assert r.status_code == 429 and "at most 3" in r.json()["detail"], r.text
    assert 3000 < int(r.headers["Retry-After"]) <= 3600
    r = api.post("/v1/observe", json={**said("I live in Bergen. I work at Zentrix Labs."), **as_dora},
                 headers=auth(ADMIN))
    assert r.status_code == 429, r.text
    assert sorted(f["object"] for f in mem.facts(user_id="dora")) == ["figs", "plums"]  # nothing of the refused
    assert api.post("/v1/observe", json={**said("I live in Bergen."), **as_dora}, headers=auth(ADMIN)).status_code == 200

    monkeypatch.setattr(mem.settings, "user_facts_per_hour", 0)
    monkeypatch.setattr(mem.settings, "user_max_facts", 3)
    r = api.post("/v1/facts", json=stated(("User dora", "likes", "pears"), **as_dora), headers=auth(ADMIN))
    assert r.status_code == 429 and "forget some" in r.json()["detail"] and "Retry-After" not in r.headers, r.text
    figs = next(f["id"] for f in mem.facts(user_id="dora") if f["object"] == "figs")
    assert api.delete(f"/v1/facts/{figs}", headers=auth(ADMIN)).status_code == 200
    r = api.post("/v1/facts", json=stated(("User dora", "likes", "pears"), **as_dora), headers=auth(ADMIN))
    assert r.status_code == 202, r.text
    # the shared scope is the operator's: no user's quota counts it
    assert api.post("/v1/facts", json=stated(("Port Arvane", "is located in", "Iceland"), ("Mount Orrel", "is located in",
                                                                                          "Chile")),
                    headers=auth(ADMIN)).status_code == 202


def test_an_operator_lists_the_users_with_memory(api, mem, two_users):
    r = api.get("/v1/users", headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    listed = {u["user_id"]: u for u in r.json()}
    assert set(listed) == {f["user_id"] for f in mem.facts() if f["user_id"]} >= {"bob"}  # the shared scope is none
    assert listed["bob"]["facts"] == mem.ledger.counts("bob") and listed["bob"]["version"] == 0
    assert api.get("/v1/users", params={"limit": 1}, headers=auth(ADMIN)).json() == r.json()[:1]


def test_an_operator_issues_a_token_that_acts_at_once_and_is_refused_once_revoked(api, mem, two_users):
    r = api.post("/v1/users/carol/tokens", headers=auth(ADMIN))
    assert r.status_code == 201, r.text
    issued = r.json()
    carol = auth(issued["token"])
    assert api.post("/v1/observe", json=said("I live in Quito."), headers=carol).json()["user_id"] == "carol"
    assert [f["object"] for f in api.get("/v1/facts", headers=carol).json()] == ["Quito"]  # hers alone
    assert api.get(f"/v1/facts/{two_users[0]}", headers=carol).status_code == 404
    assert api.post("/v1/users/carol/tokens", headers=carol).status_code == 403  # only operators issue tokens
    assert api.post("/v1/users/not a user/tokens", headers=auth(ADMIN)).status_code == 422
    listed = api.get("/v1/tokens", headers=carol).json()
    assert [(t["id"], t["user_id"]) for t in listed] == [(issued["id"], "carol")] and "token" not in listed[0]
    assert api.get("/v1/tokens", headers=auth(ALICE)).json() == []
    assert api.delete(f"/v1/tokens/{issued['id']}", headers=auth(ALICE)).status_code == 404  # not alice's
    assert api.delete(f"/v1/tokens/{issued['id']}", headers=carol).json() == {"revoked": issued["id"]}
    assert api.get("/v1/facts", headers=carol).status_code == 401
    assert mem.ledger.tokens("carol") == []


def test_sleep_now_hands_a_night_to_the_workers(api, mem):
    from agentmem.writer.dispatch import SLEEP_TASK, task_queue

    queue = task_queue(mem.layout.namespace)
    before = mem.redis.llen(queue)
    r = api.post("/v1/sleep", headers=auth(ADMIN))
    assert r.status_code == 202 and r.json() == {"runs_in": "celery"}, r.text
    sent = [json.loads(m) for m in mem.redis.lrange(queue, 0, -1)]
    assert len(sent) == before + 1 and any(m["headers"]["task"] == SLEEP_TASK for m in sent)


def test_malformed_and_oversized_bodies_get_4xx_and_change_nothing(api, mem, two_users):
    before = len(mem.facts())
    h = {**auth(ALICE), "Content-Type": "application/json"}
    bad = [
        b"{not json", b"[]", b"null", b'"text"', b"{}", b'{"messages": []}',
        b'{"messages": "I live in Rome."}',
        b'{"messages": [{"role": "robot", "content": "I live in Rome."}]}',
        b'{"messages": [{"role": "user"}]}',
        b'{"messages": [{"role": "user", "content": ""}]}',
        b'{"messages": [{"role": "user", "content": 7}]}',
        b'{"messages": [{"role": "user", "content": "I live in Rome."}], "admin": true}',
        b'{"messages": [{"role": "user", "content": "I live in Rome."}], "user_id": "../alice"}',
        json.dumps(said("I live in " + "x" * 20_001)).encode(),
        json.dumps({"messages": [{"role": "user", "content": "hi"}] * 201}).encode(),
        b"\xff\xfe\x00garbage",
    ]
    for body in bad:
        r = api.post("/v1/observe", content=body, headers=h)
        assert r.status_code == 422, (body[:60], r.status_code, r.text[:300])
    huge = json.dumps(said("I live in Rome. " * 5000)).encode()  # over the module's 64 kB limit
    assert api.post("/v1/observe", content=huge, headers=h).status_code == 413
    # streamed, with no declared length
    assert api.post("/v1/observe", content=iter([huge[:40_000], huge[40_000:]]), headers=h).status_code == 413
    for path, params in [("/v1/facts", {"status": "happy"}), ("/v1/facts", {"limit": 0}),
                         ("/v1/facts", {"user_id": "a b"}), ("/v1/facts", {"stauts": "active"}),
                         ("/v1/facts/..%2f..%2fledger", {}),
                         ("/v1/facts/" + "f" * 200, {})]:
        r = api.get(path, params=params, headers=auth(ALICE))
        assert 400 <= r.status_code < 500, (path, params, r.status_code)
        if "stauts" in params:  # a misspelt filter is named, not ignored into a wider listing
            assert r.json()["detail"][0]["loc"] == ["query", "stauts"], r.text
    assert len(mem.facts()) == before


@pytest.fixture(scope="module")
def adapter(model_dir, tmp_path_factory):
    """A real PEFT LoRA adapter folder (rank 1, untrained) outside every home."""
    from peft import LoraConfig, get_peft_model

    from agentmem.serving import model_store

    model, _ = model_store.load(model_dir)
    out = tmp_path_factory.mktemp("outside") / "adapter"
    get_peft_model(model, LoraConfig(r=1, target_modules=["q_proj"])).save_pretrained(out)
    return out


def test_adapter_paths_that_escape_the_home_are_refused(api, mem, adapter):
    import shutil

    from agentmem.storage import published

    home = mem.home
    (home / "incoming").mkdir()
    (home / "incoming" / "link").symlink_to(adapter)
    half = home / "incoming" / "half"
    half.mkdir()
    shutil.copy(adapter / "adapter_config.json", half)
    (half / "adapter_model.safetensors").symlink_to(adapter / "adapter_model.safetensors")
    adapters = home / "store" / "adapters"
    for path in [str(adapter), os.path.relpath(adapter, home), "incoming/link", str(half), "/etc", "../../.."]:
        r = api.post("/v1/adapters", json={"path": path}, headers=auth(ADMIN))
        assert r.status_code == 403, (path, r.status_code, r.text)
    assert api.post("/v1/adapters", json={"path": "incoming/none"}, headers=auth(ADMIN)).status_code == 404
    assert api.post("/v1/adapters", json={"path": "incoming"}, headers=auth(ADMIN)).status_code == 400
    assert list(adapters.glob("*")) == []  # nothing refused was copied in
    shutil.copytree(adapter, home / "incoming" / "ok")
    r = api.post("/v1/adapters", json={"path": "incoming/ok"}, headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    pub = published.newest(mem.layout, mem.ledger)
    assert pub.version == r.json()["version"] and pub.adapter_dir.is_relative_to(home / "store" / "adapters")

    # a manifest on the shared volume that points an adapter elsewhere is refused by every reader
    manifest = home / "store" / "versions" / f"v{pub.version:06d}" / "manifest.json"
    good = manifest.read_text()
    try:
        manifest.write_text(json.dumps({**json.loads(good), "adapter": {"name": "x", "path": str(adapter)}}))
        with pytest.raises(ValueError, match="outside"):
            published.newest(mem.layout, mem.ledger)
        manifest.write_text(json.dumps({**json.loads(good), "adapter": {"name": "x", "path": "adapters/../../.."}}))
        with pytest.raises(ValueError, match="outside"):
            published.newest(mem.layout, mem.ledger)
    finally:
        manifest.write_text(good)


def test_metrics_report_the_ledger_queue_and_last_recall_audit(api, mem, two_users):
    # what a night leaves behind (agentmem/sleep/night.py writes these)
    (mem.home / "sleep").mkdir(exist_ok=True)
    (mem.home / "sleep" / "night-20261126-030000.json").write_text(json.dumps(
        {"started": 1795000000.0, "outcome": "published", "before": {"recall": 0.9}, "after": {"recall": 0.95}}))
    r = api.get("/metrics", headers=auth(ADMIN))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(r.text) for s in fam.samples}
    for status, n in mem.ledger.counts().items():
        assert samples[("agentmem_facts", (("status", status),))] == n
    assert samples[("agentmem_facts", (("status", "failed"),))] == 0
    # users are counted, never named
    users = {r["scope"] for r in mem.facts()} - {""}
    assert samples[("agentmem_users", ())] == len(users) >= 1
    assert samples[("agentmem_scope_facts", (("scope", "users"),))] == sum(1 for r in mem.facts() if r["scope"])
    assert not any(u in r.text for u in users)
    assert samples[("agentmem_queue_up", ())] == 1
    assert samples[("agentmem_queue_depth", ())] == mem.queue.backlog() >= 1
    assert samples[("agentmem_version", ())] == mem.version
    assert samples[("agentmem_edit_latency_seconds_count", ())] == len(mem.ledger.edit_latencies())
    assert ("agentmem_publish_latency_seconds_bucket", (("le", "+Inf"),)) in samples
    assert samples[("agentmem_recall_audit_ratio", (("phase", "after"),))] == 0.95
    assert samples[("agentmem_recall_audit_published", ())] == 1
    # the same night at a glance for an operator; a user sees their own nights only, and has had none
    status = api.get("/v1/status", headers=auth(ADMIN)).json()
    assert status["night"] == {"started": 1795000000.0, "outcome": "published", "seconds": None, "facts": None,
                               "version": None}
    assert api.get("/v1/status", headers=auth(BOB)).json()["night"] is None


def test_each_request_is_logged_as_one_json_object(api):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("agentmem.api")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        api.get("/v1/facts", headers={**auth(BOB), "X-Request-ID": "abc123"})
        api.get("/v1/status", headers=auth("wrong-token-0123456789abcdef"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    ok, refused = [json.loads(line) for line in out.getvalue().splitlines()]
    assert ok["path"] == "/v1/facts" and ok["status"] == 200 and ok["user"] == "bob" and ok["request_id"] == "abc123"
    assert ok["level"] == "info" and ok["logger"] == "agentmem.api" and ok["ms"] >= 0
    assert refused["status"] == 401 and refused["user"] is None
    assert "wrong-token" not in out.getvalue() and BOB not in out.getvalue()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app, two_users):
    # driven by hand: schemathesis's pytest plugin does not run under pytest 9
    # 413 is a documented refusal the description cannot express as a schema (a limit in bytes)
    statuses = {"negative_data_rejection": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                                            "428", "429", "5xx"],
                # 400: a path inside the home naming a folder that is not an adapter, a fact of the home
                "positive_data_acceptance": ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "429", "5xx"]}
    config = SchemathesisConfig.from_dict({"checks": {k: {"expected-statuses": v} for k, v in statuses.items()}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures, ran = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        # valid requests must succeed (or be refused as documented); invalid ones must get a 4xx
        for mode in GenerationMode:
            ran.append(f"{operation.label} ({mode.value})")

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def call(case):
                case.call_and_validate(headers=auth(ADMIN))

            try:
                call()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, ran[-1]  # a route without inputs has no invalid ones
                ran.pop()
            except Exception as e:  # every operation runs; each one's failure is reported below
                failures[ran[-1]] = f"{type(e).__name__}: {e}"[:3000]
    assert len(ran) == 31, ran  # every route but the OpenAPI description, both ways (/health takes no input)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
