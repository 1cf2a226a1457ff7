"""The `agentmem` command line: a thin layer over `Memory` with --home, --json and one-line errors.

Commands that need the model import it when they run, so `facts`, `history` and `status` answer without loading
torch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

import redis
import typer
from pydantic import ValidationError
from redis.exceptions import RedisError

from ..config import USER_ID, Settings, settings_error
from ..facts import Fact, FactError, load_jsonl
from ..logs import setup
from ..serving.auth import issue
from ..storage.layout import Layout
from ..storage.ledger import ACTIVE, PENDING, WAITING, Ledger
from ..storage.overview import overview, users_overview
from ..writer.fact_queue import ShardedQueue
from .common import DeviceOpt, HomeOpt, JsonOpt, ModelOpt, RedisOpt, ServerOpt, emit, fail, given, open_memory, say

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Memory written into a model's weights.")


@app.command()
def remember(
    jsonl: Path = typer.Option(..., "--jsonl", help="facts, one JSON object per line"),
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
    redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt,
    batch: int = typer.Option(0, "--batch", min=0, help="facts per wake edit (0: all in one)"),
    sleep_every: int = typer.Option(0, "--sleep-every", min=0,
                                    help="run a night after every this many facts and after the last (0: none); "
                                         "the wake editor carries about a day's facts, so a large file needs it"),
    queue: bool = typer.Option(False, "--queue", help="hand the facts to the workers through Redis, screened as "
                                                      "the conversation hook screens them, instead of editing now"),
):
    """Write the facts in FILE into the weights now (or, with --queue, through the workers)."""
    try:
        facts = load_jsonl(jsonl)
    except (FactError, OSError) as e:
        fail(str(e))
    if not facts:
        fail(f"{jsonl} holds no facts")
    if queue:
        remember_queued(facts, home, model, redis_url, device, as_json, batch or sleep_every)
        return
    day = sleep_every or len(facts)
    step = min(batch or day, day)
    ids, nights = [], []
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        for start in range(0, len(facts), day):
            edited = 0
            for at in range(start, min(start + day, len(facts)), step):
                ids += mem.remember(facts[at:min(at + step, start + day)])
                edited += mem.last_stats.get("edited", 0)
            # facts already in (a run begun again after a stop) need no night of their own
            if sleep_every and edited:
                report = mem.sleep()
                nights.append({"outcome": report["outcome"], "facts": report["facts"], "version": report["version"],
                               "users": report.get("users", {})})
                say(f"night after {min(start + day, len(facts))} of {len(facts)} facts: {report['outcome']}")
        out = {"ids": ids, "version": mem.version, "stats": mem.last_stats, **({"nights": nights} if nights else {})}
        emit(out, as_json, "\n".join(ids) + f"\n(version {mem.version})")


def remember_queued(facts, home, model, redis_url, device, as_json, editing_option) -> None:
    if editing_option:
        fail("--queue leaves batches and nights to the workers: drop --batch and --sleep-every")
    if not redis_url:
        fail("--queue needs the workers' Redis (--redis-url or AGENTMEM_REDIS_URL); without it remember edits now")
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        out = [f.to_json() for f in mem.remember_later(facts)]
    emit(out, as_json, "\n".join(f"{f['id']}  {f['status']:<8} {f['subject']} | {f['relation']} | {f['object']}"
                                 + (f"  ({f['reason']})" if f.get("reason") else "") for f in out))


@app.command()
def backup(
    dest: Path = typer.Argument(..., help="a new folder for the copy"),
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
    redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt,
):
    """Copy the home whole into DEST, as one moment, while its writers wait (`agentmem restore` makes it a home)."""
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        manifest = mem.backup(dest)
    rows = manifest["rows"]
    emit(manifest, as_json, f"{rows['facts']} facts, {rows['versions']} versions, {rows['events']} events: {dest}")


@app.command()
def restore(
    src: Path = typer.Argument(..., help="a folder `agentmem backup` wrote"),
    home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt,
):
    """Make the backup SRC into a new home (its ledger in AGENTMEM_DATABASE_URL's database if set)."""
    from ..storage import backup as backups  # loads torch: only this command pays for it

    settings = Settings(**given(home=home))
    done = backups.restore(src, Layout(settings.home), settings.database_url)
    emit(done, as_json, f"{done['rows']['facts']} facts restored into {Layout(settings.home).home}")


@app.command()
def export(
    home: Optional[Path] = HomeOpt,
    user_id: Optional[str] = typer.Option(None, "--user", help="only this user's facts"),
    out: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of standard output"),
):
    """The home's facts as JSON lines for `agentmem remember --jsonl`: every active fact and every one still
    waiting for its edit, with its id and user, oldest first (to carry a memory to another model or home)."""
    ledger = open_ledger(Settings(**given(home=home)))
    try:
        rows = ledger.facts(user_id=user_id, status=(ACTIVE, PENDING, *WAITING))
    finally:
        ledger.close()
    text = "".join(json.dumps({**r["fact"], "id": r["id"]}) + "\n" for r in rows)
    if out is None:
        typer.echo(text, nl=False)
        return
    from ..storage.atomic import atomic_path  # loads torch: only a file written pays for it

    with atomic_path(out) as tmp:
        tmp.write_text(text)
    say(f"{len(rows)} facts written to {out}")


UserOpt = typer.Option("default", "--user", help="answer with this user's memory")
SharedOpt = typer.Option(False, "--shared", help="answer with the shared memory alone (no user's)")


@app.command()
def ask(question: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
        server_url: Optional[str] = ServerOpt, user: str = UserOpt, shared: bool = SharedOpt,
        device: Optional[str] = DeviceOpt):
    """Greedy chat answer from the newest version (no memory text in the context)."""
    with open_memory(read_only=True, home=home, model=model, server_url=server_url, device=device) as mem:
        answer = mem.ask(question, user_id=None if shared else user)
        emit({"question": question, "answer": answer, "version": mem.version}, as_json, answer)


@app.command()
def complete(prompt: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
             server_url: Optional[str] = ServerOpt,
             user: Optional[str] = typer.Option(None, "--user", help="with this user's memory (default: shared only)"),
             device: Optional[str] = DeviceOpt):
    """Greedy raw completion from the newest version."""
    with open_memory(read_only=True, home=home, model=model, server_url=server_url, device=device) as mem:
        text = mem.complete(prompt, user_id=user)
        emit({"prompt": prompt, "completion": text, "version": mem.version}, as_json, text)


@app.command()
def forget(fact_id: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
           redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt):
    """Remove a fact from the weights."""
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        mem.forget(fact_id)
        emit({"forgotten": fact_id, "version": mem.version}, as_json, f"forgotten {fact_id} (version {mem.version})")


@app.command("forget-user")
def forget_user(user_id: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
                as_json: bool = JsonOpt, redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt):
    """Remove everything of a user at once: facts, edits, adapters and versions."""
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        n = mem.forget_user(user_id)
        emit({"forgotten_user": user_id, "facts": n}, as_json, f"forgot user {user_id} ({n} facts)")


@app.command("move-to-users")
def move_to_users(home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
                  redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt):
    """Move the users' facts a home made before per-user memory keeps in its shared weights into their own."""
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        out = mem.move_to_users()
        emit(out, as_json, f"moved {out['moved']} facts into {out['users']} users' own memory")


def open_ledger(settings: Settings) -> Ledger:
    """The ledger of the home the settings name (AGENTMEM_DATABASE_URL's database if set), without the model."""
    return Ledger.open(Layout(settings.home), settings.database_url)


@app.command()
def facts(home: Optional[Path] = HomeOpt, user_id: Optional[str] = typer.Option(None, "--user"),
          as_json: bool = JsonOpt):
    """List the ledger's facts."""
    ledger = open_ledger(Settings(**given(home=home)))
    rows = ledger.facts(user_id=user_id)
    ledger.close()
    text = "\n".join(
        f"{r['id']}  {r['status']:<9} stage {r['stage']} scale {r['scale']:.2f}  "
        f"{r['subject']} | {r['relation']} | {r['object']}" for r in rows
    ) or "(no facts)"
    emit(rows, as_json, text)


@app.command()
def history(fact_id: str, home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Every event of one fact."""
    ledger = open_ledger(Settings(**given(home=home)))
    try:
        if ledger.get(fact_id) is None:
            fail(f"no fact with id {fact_id!r}")
        rows = ledger.history(fact_id)
    finally:
        ledger.close()
    emit(rows, as_json, "\n".join(f"{r['seq']:>5} {r['kind']:<10} {r.get('reason') or ''}" for r in rows))


@app.command()
def status(home: Optional[Path] = HomeOpt, user_id: Optional[str] = typer.Option(None, "--user"),
           redis_url: Optional[str] = RedisOpt, as_json: bool = JsonOpt):
    """The home at a glance, without the model: version, what is served, facts by status (of one user with
    --user), the newest night, the base model and, with --redis-url, the facts waiting on the queue."""
    settings = Settings(**given(home=home, redis_url=redis_url))
    layout = Layout(settings.home)
    ledger = open_ledger(settings)
    try:
        out = overview(ledger, layout, user_id)
    finally:
        ledger.close()
    night = out["night"]
    out["queue"] = None  # embedded: the queue lives in the writing process
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
        try:
            out["queue"] = ShardedQueue(client, layout.namespace, settings.writer_shards).backlog()
        except RedisError as e:  # the rest is worth seeing most when Redis is down
            out["queue_error"] = _one_line(e)
    live = out["live"]
    emit(out, as_json, "\n".join([
        f"version {out['version']}" + (f", served: {live['version']}" if live else ", not served yet"),
        "facts: " + (", ".join(f"{n} {s}" for s, n in sorted(out["facts"].items())) or "none"),
        "last night: " + (f"{night['outcome']}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(night['started']))} "
                          f"UTC, {night.get('seconds')} s" if night else "none yet"),
        "base model: " + (out["base_model"]["model"] if out["base_model"] else "not bound yet"),
        *([f"queue: {out['queue']} waiting" if out["queue"] is not None else f"queue: {out['queue_error']}"]
          if settings.redis_url else []),
    ]))


@app.command()
def users(home: Optional[Path] = HomeOpt, limit: int = typer.Option(100, "--limit", min=1, max=10_000),
          offset: int = typer.Option(0, "--offset", min=0), as_json: bool = JsonOpt):
    """The users with memory in this home, by id: their facts by status, newest version and last night."""
    settings = Settings(**given(home=home))
    ledger = open_ledger(settings)
    try:
        rows = users_overview(ledger, Layout(settings.home), limit, offset)
    finally:
        ledger.close()
    emit(rows, as_json, "\n".join(
        f"{u['user_id']}  version {u['version']}  " + ", ".join(f"{n} {s}" for s, n in sorted(u["facts"].items()))
        + (f"  last night: {u['night']['outcome']}" if u["night"] else "") for u in rows) or "(no users)")


tokens = typer.Typer(no_args_is_help=True, help="Bearer tokens issued to users: acting at once, revoked at once, "
                                                 "in every API and model server of the home, with no restart.")
app.add_typer(tokens, name="token")


@tokens.command("create")
def token_create(user_id: str, home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Issue a new token for USER_ID. It is printed once: only its SHA-256 is kept."""
    if not USER_ID.fullmatch(user_id):
        fail(f"user id {user_id!r} must match {USER_ID.pattern}")
    ledger = open_ledger(Settings(**given(home=home)))
    try:
        out = issue(ledger, user_id)
    finally:
        ledger.close()
    emit(out, as_json, f"{out['token']}\n(token {out['id']} for {user_id}; it is not shown again)")


@tokens.command("list")
def token_list(home: Optional[Path] = HomeOpt, user_id: Optional[str] = typer.Option(None, "--user"),
               as_json: bool = JsonOpt):
    """The issued tokens, by id (never the tokens): everyone's, or one user's."""
    ledger = open_ledger(Settings(**given(home=home)))
    try:
        rows = ledger.tokens(user_id)
    finally:
        ledger.close()
    emit(rows, as_json, "\n".join(f"{r['id']}  {r['user_id']}  issued "
                                  f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(r['created']))} UTC"
                                  for r in rows) or "(no tokens)")


@tokens.command("revoke")
def token_revoke(token_id: str, home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Revoke the token TOKEN_ID (as `token list` names it): refused from now on."""
    ledger = open_ledger(Settings(**given(home=home)))
    try:
        user = ledger.drop_token(token_id)
    finally:
        ledger.close()
    if user is None:
        fail(f"no token with id {token_id!r}")
    emit({"revoked": token_id, "user_id": user}, as_json, f"revoked {token_id} of {user}")


@app.command()
def demo(home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, device: Optional[str] = DeviceOpt):
    """Remember a fact about a fictional person, then ask about it in a fresh context."""
    fact = Fact(subject="Aria Castellanos", relation="lives in", object="Portland")
    with open_memory(home=home, model=model, device=device) as mem:
        q = fact.questions()[0]
        typer.echo(f"before: {q} -> {mem.ask(q)}")
        mem.remember([fact])
        typer.echo(f"remembered: {fact.statement}  ({mem.last_stats['seconds']} s, version {mem.version})")
        typer.echo(f"after:  {q} -> {mem.ask(q)}")
        for p in fact.paraphrases():
            typer.echo(f"paraphrase: {p} -> {mem.ask(p)}")


@app.command()
def worker(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
    redis_url: str = typer.Option(..., "--redis-url", envvar="AGENTMEM_REDIS_URL", help="the Redis holding the fact queue"),
    beat: bool = typer.Option(False, "--beat", help="also run the beat scheduler (nightly sleep, periodic sweep)"),
    loglevel: str = typer.Option("INFO", "--loglevel"),
    heartbeat: Optional[Path] = typer.Option(None, "--heartbeat", help="touch this file every 15 s while running, "
                                                                       "tasks included (for a health check)"),
    device: Optional[str] = DeviceOpt,
):
    """Run a Celery worker that applies queued facts (one writer at a time across workers)."""
    from celery import signals

    from ..logs import formatter
    from ..workers.app import run_worker

    settings = Settings(**given(redis_url=redis_url, home=home, model=model, device=device))

    if settings.log_format == "json":
        @signals.after_setup_logger.connect(weak=False)
        @signals.after_setup_task_logger.connect(weak=False)
        def _format(logger=None, **_):
            # Celery installs its own handlers; give them the configured format
            for handler in logger.handlers:
                handler.setFormatter(formatter("json"))

    run_worker(settings, beat=beat, loglevel=loglevel, heartbeat=heartbeat)


@app.command()
def sleep(home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
          user: Optional[str] = typer.Option(None, "--user", help="run only this user's night"),
          redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt):
    """Consolidate now (what the nightly task runs): the shared facts, then each user's into their own adapter."""
    with open_memory(home=home, model=model, redis_url=redis_url, device=device) as mem:
        report = mem.sleep(user)
    graduated = sum(1 for s in report.get("stages", {}).values() if s["stage"][1] > s["stage"][0])
    users = report.get("users", {})
    published = sum(1 for u in users.values() if u["outcome"] == "published")
    emit(report, as_json, f"{report['outcome']} ({report['facts']} facts, {graduated} moved a stage on, "
                           f"{report['seconds']} s; version {report['version']})"
                           + (f"; users: {published} of {len(users)} nights published" if users else ""))


@app.command()
def chat(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, server_url: Optional[str] = ServerOpt,
    user: str = typer.Option("default", "--user", help="whose facts these are"),
    redis_url: Optional[str] = RedisOpt, device: Optional[str] = DeviceOpt,
):
    """The assistant that learns: talk, and what you say about yourself is written into its weights."""
    import logging

    from transformers.utils import logging as hf_logging

    from ..chat import ChatApp

    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()  # a loading bar in the middle of a conversation is noise
    with open_memory(home=home, model=model, server_url=server_url, redis_url=redis_url, device=device) as mem:
        ChatApp(mem, user_id=user).run()


@app.command()
def serve(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="where the public, inference-only side listens"),
    port: int = typer.Option(8000, "--port"),
    engine: str = typer.Option("auto", "--engine", help="vllm, embedded (transformers), or auto: vllm if installed"),
    max_lora_rank: int = typer.Option(64, "--max-lora-rank", help="largest adapter rank vLLM accepts (at least "
                                      "AGENTMEM_USER_MAX_RANK)"),
    max_loras: int = typer.Option(4, "--max-loras", help="vLLM: users' adapters in one batch"),
    max_cpu_loras: int = typer.Option(16, "--max-cpu-loras", help="vLLM: users' adapters kept loaded"),
    max_model_len: int = typer.Option(2048, "--max-model-len", help="vLLM's context length"),
    dev: bool = typer.Option(False, "--dev", help="no tokens: trust the OpenAI `user` field (loopback only)"),
    observe_url: Optional[str] = typer.Option(None, "--observe-url", envvar="AGENTMEM_SERVE_OBSERVE_URL",
                                              help="the memory API (`agentmem api`) to hand each user's chat turn "
                                                   "to, to be learned"),
    loglevel: str = typer.Option("INFO", "--loglevel"), device: Optional[str] = DeviceOpt,
):
    """The OpenAI-compatible model server: always the newest published version, labelled in every answer.

    Each request is answered with its user's memory: the user of its bearer token (AGENTMEM_API_TOKENS), or the
    one an operator token names in the `user` field; with --dev and no tokens, the `user` field is trusted."""
    from ..serving.gateway import make_engine, serve as run
    from ..serving.limits import Limits
    from ..serving.model_store import resolve
    from ..storage import base_model

    settings = Settings(**given(home=home, model=model, device=device, serve_observe_url=observe_url))
    setup(settings.log_format, loglevel)
    home_dir = Layout(settings.home).home
    model_dir = resolve(settings.model, settings.cache_dir)
    ledger = open_ledger(settings)
    try:
        base_model.bind(ledger, model_dir)  # a server of another model would serve edits made for this one
    finally:
        ledger.close()
    limits = Limits(max_body_bytes=settings.serve_max_body_bytes, max_tokens=settings.serve_max_tokens,
                    max_n=settings.serve_max_n, max_logprobs=settings.serve_max_logprobs,
                    request_timeout_s=settings.serve_request_timeout_s,
                    user_requests_per_minute=settings.serve_user_requests_per_minute)
    if dev and host not in ("127.0.0.1", "localhost", "::1"):
        fail(f"--dev trusts the request's user field: it listens on loopback only, not {host}")
    if max_lora_rank < settings.user_max_rank:
        fail(f"--max-lora-rank {max_lora_rank} is below AGENTMEM_USER_MAX_RANK ({settings.user_max_rank}): "
             "users' adapters would not load")
    engine_ = make_engine(engine, model_dir, home_dir, max_lora_rank, max_model_len, settings.device, max_loras,
                          max_cpu_loras)
    run(home_dir, engine_, host, port, limits, settings.database_url, settings.api_tokens, dev,
        settings.serve_observe_url)


@app.command()
def api(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
    redis_url: Optional[str] = typer.Option(None, "--redis-url", envvar="AGENTMEM_REDIS_URL",
                                            help="the Redis of the workers (default: edit in this process)"),
    host: str = typer.Option("127.0.0.1", "--host", help="where the API listens"),
    port: int = typer.Option(8080, "--port"),
    dev: bool = typer.Option(False, "--dev", help="local development: no tokens, every request acts as an "
                                                  "operator; only on a loopback host"),
    loglevel: str = typer.Option("INFO", "--loglevel"), device: Optional[str] = DeviceOpt,
):
    """The memory-management HTTP API (observe, facts, forget, history, sleep, status, /metrics) behind bearer tokens."""
    settings = Settings(**given(home=home, model=model, redis_url=redis_url, device=device))
    # refuse before the model loads: a misconfigured service should fail in a second, not after one
    if not settings.api_tokens and not dev:
        fail("no API tokens: set AGENTMEM_API_TOKENS to a JSON object {\"<token>\": \"<user id or *>\"}, "
              "or pass --dev for a local development run")
    if dev and not settings.api_tokens and host not in ("127.0.0.1", "localhost", "::1"):
        fail(f"--dev without tokens listens on loopback only, not on {host}")
    setup(settings.log_format, loglevel)
    from ..api import serve as run_api
    from ..memory import Memory

    with Memory(settings) as mem:
        run_api(mem, host, port, dev)


def run(typer_app: typer.Typer = app) -> None:
    """Run the command line; refused input and failures end in one line on stderr and exit status 1."""
    try:
        typer_app()
    except (FactError, ValueError, KeyError, RuntimeError, OSError, RedisError) as e:
        # pydantic spreads a refused setting over lines; name its variable on one
        settings = isinstance(e, ValidationError) and e.title == Settings.__name__
        typer.echo(f"agentmem: {settings_error(e) if settings else _one_line(e)}", err=True)
        sys.exit(1)
    except Exception as e:  # a fault of ours: still one line, naming its kind and where the traceback was kept
        fd, path = tempfile.mkstemp(prefix="agentmem-error-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        typer.echo(f"agentmem: internal error ({type(e).__name__}): {_one_line(e)} (traceback in {path})", err=True)
        sys.exit(1)


def _one_line(e: BaseException) -> str:
    said = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # a KeyError's str() is its repr
    if isinstance(e, RedisError):
        said = f"Redis: {said}"
    return " ".join(said.split()) or type(e).__name__
