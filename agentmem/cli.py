"""The `agentmem` command line: a thin layer over `Memory` with --home, --json and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .facts import FactError, load_jsonl

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Memory written into a model's weights.")

HomeOpt = typer.Option(None, "--home", envvar="AGENTMEM_HOME", help="memory folder (default ~/.agentmem)")
ModelOpt = typer.Option(None, "--model", envvar="AGENTMEM_MODEL", help="local Hugging Face checkpoint folder")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
ServerOpt = typer.Option(None, "--server-url", envvar="AGENTMEM_SERVER_URL",
                         help="answer through this `agentmem serve` (default: in this process)")


def _fail(msg: str) -> None:
    typer.echo(f"agentmem: {msg}", err=True)
    raise typer.Exit(1)


def _open(home: Optional[Path], model: Optional[str], server_url: Optional[str] = None):
    from .memory import Memory

    kwargs = {"model": model} if model else {}
    if server_url:
        kwargs["server_url"] = server_url
    return Memory.open(home, progress=lambda m: typer.echo(m, err=True), **kwargs)


def _emit(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


@app.command()
def remember(
    jsonl: Path = typer.Option(..., "--jsonl", help="facts, one JSON object per line"),
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
):
    """Write the facts in FILE into the weights now."""
    try:
        facts = load_jsonl(jsonl)
    except (FactError, OSError) as e:
        _fail(str(e))
    if not facts:
        _fail(f"{jsonl} holds no facts")
    with _open(home, model) as mem:
        ids = mem.remember(facts)
        _emit({"ids": ids, "version": mem.version, "stats": mem.last_stats}, as_json,
              "\n".join(ids) + f"\n(version {mem.version})")


@app.command()
def ask(question: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
        server_url: Optional[str] = ServerOpt):
    """Greedy chat answer from the newest version (no memory text in the context)."""
    with _open(home, model, server_url) as mem:
        answer = mem.ask(question)
        _emit({"question": question, "answer": answer, "version": mem.version}, as_json, answer)


@app.command()
def complete(prompt: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
             server_url: Optional[str] = ServerOpt):
    """Greedy raw completion from the newest version."""
    with _open(home, model, server_url) as mem:
        text = mem.complete(prompt)
        _emit({"prompt": prompt, "completion": text, "version": mem.version}, as_json, text)


@app.command()
def forget(fact_id: str, home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt):
    """Remove a fact from the weights."""
    with _open(home, model) as mem:
        try:
            mem.forget(fact_id)
        except KeyError as e:
            _fail(str(e.args[0]))
        _emit({"forgotten": fact_id, "version": mem.version}, as_json, f"forgotten {fact_id} (version {mem.version})")


@app.command()
def facts(home: Optional[Path] = HomeOpt, user_id: Optional[str] = typer.Option(None, "--user"),
          as_json: bool = JsonOpt):
    """List the ledger's facts."""
    from .ledger import Ledger

    root = Path(home or Path.home() / ".agentmem").expanduser()
    ledger = Ledger(root / "ledger.sqlite")
    rows = ledger.facts(user_id=user_id)
    ledger.close()
    text = "\n".join(
        f"{r['id']}  {r['status']:<9} stage {r['stage']} scale {r['scale']:.2f}  "
        f"{r['subject']} | {r['relation']} | {r['object']}" for r in rows
    ) or "(no facts)"
    _emit(rows, as_json, text)


@app.command()
def history(fact_id: str, home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Every event of one fact."""
    from .ledger import Ledger

    ledger = Ledger(Path(home or Path.home() / ".agentmem").expanduser() / "ledger.sqlite")
    try:
        if ledger.get(fact_id) is None:
            _fail(f"no fact with id {fact_id!r}")
        rows = ledger.history(fact_id)
    finally:
        ledger.close()
    _emit(rows, as_json, "\n".join(f"{r['seq']:>5} {r['kind']:<10} {r.get('reason') or ''}" for r in rows))


@app.command()
def demo(home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt):
    """Remember a fact about a fictional person, then ask about it in a fresh context."""
    from .facts import Fact

    fact = Fact(subject="Aria Castellanos", relation="lives in", object="Portland")
    with _open(home, model) as mem:
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
):
    """Run a Celery worker that applies queued facts (one writer at a time across workers)."""
    from celery import signals

    from .config import Settings
    from .logs import formatter
    from .workers.app import run_worker

    kwargs = {"redis_url": redis_url, **({"model": model} if model else {}), **({"home": home} if home else {})}
    settings = Settings(**kwargs)

    if settings.log_format == "json":
        @signals.after_setup_logger.connect(weak=False)
        @signals.after_setup_task_logger.connect(weak=False)
        def _format(logger=None, **_):
            # Celery installs its own handlers; give them the configured format
            for handler in logger.handlers:
                handler.setFormatter(formatter("json"))

    run_worker(settings, beat=beat, loglevel=loglevel)


@app.command()
def sleep(home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt):
    """Consolidate every active fact into the LoRA adapter now (what the nightly task runs)."""
    with _open(home, model) as mem:
        report = mem.sleep()
    graduated = sum(1 for s in report.get("stages", {}).values() if s["stage"][1] > s["stage"][0])
    _emit(report, as_json, f"{report['outcome']} ({report['facts']} facts, {graduated} moved a stage on, "
                           f"{report['seconds']} s; version {report['version']})")


@app.command()
def chat(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, server_url: Optional[str] = ServerOpt,
    user: str = typer.Option("default", "--user", help="whose facts these are"),
):
    """The assistant that learns: talk, and what you say about yourself is written into its weights."""
    import logging

    from transformers.utils import logging as hf_logging

    from .chat import ChatApp

    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()  # a loading bar in the middle of a conversation is noise
    with _open(home, model, server_url) as mem:
        ChatApp(mem, user_id=user).run()


@app.command()
def serve(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="where the public, inference-only side listens"),
    port: int = typer.Option(8000, "--port"),
    engine: str = typer.Option("auto", "--engine", help="vllm, embedded (transformers), or auto: vllm if installed"),
    max_lora_rank: int = typer.Option(64, "--max-lora-rank", help="largest adapter rank vLLM accepts"),
    max_model_len: int = typer.Option(2048, "--max-model-len", help="vLLM's context length"),
    loglevel: str = typer.Option("INFO", "--loglevel"),
):
    """The OpenAI-compatible model server: always the newest published version, labelled in every answer."""
    from .config import Settings
    from .logs import setup
    from .model_store import resolve
    from .server import make_engine, serve as run

    settings = Settings(**({"model": model} if model else {}), **({"home": home} if home else {}))
    setup(settings.log_format, loglevel)
    home_dir = Path(settings.home).expanduser()
    model_dir = resolve(settings.model, settings.cache_dir)
    run(home_dir, make_engine(engine, model_dir, home_dir, max_lora_rank, max_model_len, settings.device), host, port)


@app.command()
def api(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt,
    redis_url: Optional[str] = typer.Option(None, "--redis-url", envvar="AGENTMEM_REDIS_URL",
                                            help="the Redis of the workers (default: edit in this process)"),
    host: str = typer.Option("127.0.0.1", "--host", help="where the API listens"),
    port: int = typer.Option(8080, "--port"),
    dev: bool = typer.Option(False, "--dev", help="local development: no tokens, every request acts as an "
                                                  "operator; only on a loopback host"),
    loglevel: str = typer.Option("INFO", "--loglevel"),
):
    """The memory-management HTTP API (observe, facts, forget, history, sleep, status, /metrics) behind bearer tokens."""
    from .config import Settings
    from .logs import setup

    kwargs = {**({"model": model} if model else {}), **({"home": home} if home else {}),
              **({"redis_url": redis_url} if redis_url else {})}
    settings = Settings(**kwargs)
    # refuse before the model loads: a misconfigured service should fail in a second, not after one
    if not settings.api_tokens and not dev:
        _fail("no API tokens: set AGENTMEM_API_TOKENS to a JSON object {\"<token>\": \"<user id or *>\"}, "
              "or pass --dev for a local development run")
    if dev and not settings.api_tokens and host not in ("127.0.0.1", "localhost", "::1"):
        _fail(f"--dev without tokens listens on loopback only, not on {host}")
    setup(settings.log_format, loglevel)
    from .api import serve as run_api
    from .memory import Memory

    with Memory(settings) as mem:
        run_api(mem, host, port, dev)


def main() -> None:
    try:
        app()
    except (FactError, ValueError, KeyError, RuntimeError) as e:
        typer.echo(f"agentmem: {e}", err=True)
        sys.exit(1)


eval_app = typer.Typer(help="benchmarks (JSON)")


def _report(result: dict, out: Optional[Path]) -> None:
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)
app.add_typer(eval_app, name="eval")


@eval_app.command("edit")
def eval_edit(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
    counterfact: Optional[Path] = typer.Option(None, help="CounterFact JSON (EasyEdit layout)"),
    records: int = typer.Option(200, help="CounterFact records to apply"),
    quick: bool = typer.Option(False, help="smaller sizes, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
    modes: str = typer.Option("nullspace,none,alphaedit", help="CounterFact constraint modes, comma-separated"),
    wake: bool = typer.Option(True, help="run the fictional-facts part"),
):
    """Wake-editor benchmark: speed, recall, specificity, perplexity drift, CounterFact."""
    from .evaluate import edit_benchmark

    result = edit_benchmark(home=home, model=model, counterfact=counterfact, records=records, quick=quick,
                            progress=lambda m: typer.echo(m, err=True), modes=tuple(modes.split(",")), wake=wake)
    _report(result, out)


@eval_app.command("pipeline")
def eval_pipeline(
    home: Optional[Path] = HomeOpt,
    redis_url: Optional[str] = typer.Option(None, "--redis-url", envvar="AGENTMEM_REDIS_URL",
                                            help="measure the Redis + Celery path (starts a worker)"),
    dataset: Optional[Path] = typer.Option(None, help="extraction test set (JSONL); default: the bundled one"),
    facts: int = typer.Option(20, help="facts for the latency and throughput runs"),
    quick: bool = typer.Option(False, help="4 facts, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Wake-pipeline benchmark: extraction precision/recall, observe-to-recallable p50/p95, throughput."""
    from .pipeline_bench import EXTRACTION_SET, pipeline_benchmark

    dataset = dataset or EXTRACTION_SET
    if not dataset.exists():
        _fail(f"extraction dataset {dataset} not found")
    result = pipeline_benchmark(dataset, home=home, redis_url=redis_url, facts=facts, quick=quick,
                                progress=lambda m: typer.echo(m, err=True))
    _report(result, out)


@eval_app.command("serve")
def eval_serve(
    home: Optional[Path] = HomeOpt,
    engine: str = typer.Option("auto", "--engine", help="vllm, embedded, or auto (vllm if installed)"),
    edits: int = typer.Option(10, help="facts edited one at a time for the publish latency"),
    requests: int = typer.Option(16, help="chat requests per throughput run"),
    concurrency: int = typer.Option(4, help="requests in flight at once"),
    max_tokens: int = typer.Option(64, help="tokens per chat answer"),
    quick: bool = typer.Option(False, help="small sizes, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Serving benchmark: publish latency p50/p95, bytes per publish, chat tokens/s with and without an adapter."""
    from .serve_bench import serve_benchmark

    result = serve_benchmark(home=home, engine=engine, edits=edits, requests=requests, concurrency=concurrency,
                             max_tokens=max_tokens, quick=quick, progress=lambda m: typer.echo(m, err=True))
    _report(result, out)


@eval_app.command("sleep")
def eval_sleep(
    home: Optional[Path] = HomeOpt,
    days: int = typer.Option(3, help="simulated days, a night after each"),
    facts_per_day: int = typer.Option(50, "--facts-per-day"),
    quick: bool = typer.Option(False, help="2 days of 6 facts, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Sleep benchmark: recall, paraphrase recall, perplexity drift, dissolved edits and night duration per day."""
    from .sleep_bench import sleep_benchmark

    result = sleep_benchmark(home=home, days=days, facts_per_day=facts_per_day, quick=quick,
                             progress=lambda m: typer.echo(m, err=True))
    _report(result, out)


# -- the evaluation suites (issue 7): JSON, a plot beside it, and docs/RESULTS.md ----------

SuiteOut = typer.Option(None, "--out", help="write the JSON here (docs/results/SUITE.json), its PNG plot beside it, "
                                            "and regenerate RESULTS.md one folder up")
SuiteDoc = typer.Option(None, "--doc", help="the RESULTS.md to regenerate (default: OUT's folder's parent)")
SuiteHome = typer.Option(None, "--home", help="keep the suite's memories here (default: a temporary folder)")
QuickOpt = typer.Option(False, "--quick", help="tiny sizes, for tests")


def _csv(text: str, kind=str) -> tuple:
    return tuple(kind(x) for x in text.split(",") if x.strip())


def _suite_report(result: dict, out: Optional[Path], doc: Optional[Path]) -> None:
    from .suites.report import write

    if out:
        write(result, out, doc or out.parent.parent / "RESULTS.md")
    typer.echo(json.dumps(result, indent=2))


def _say(message: str) -> None:
    typer.echo(message, err=True)


@eval_app.command("capacity")
def eval_capacity(sizes: str = typer.Option("10,20,50,100,200,500", help="facts at which recall is measured"),
                  batch: int = typer.Option(10, help="facts per sequential edit"),
                  modes: str = typer.Option("nullspace,none", help="constraint modes, comma-separated"),
                  quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                  doc: Optional[Path] = SuiteDoc):
    """Recall of every fact so far against the number of facts, constraints on and off."""
    from .suites import capacity

    _suite_report(capacity(_csv(sizes, int), batch, _csv(modes), quick, home, _say), out, doc)


@eval_app.command("retention")
def eval_retention(batches: int = typer.Option(5, help="sequential batches"), batch: int = typer.Option(10),
                   modes: str = typer.Option("nullspace,none"), quick: bool = QuickOpt,
                   home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Recall of the first batch as later batches arrive."""
    from .suites import retention

    _suite_report(retention(batches, batch, _csv(modes), quick, home, _say), out, doc)


@eval_app.command("ablation")
def eval_ablation(facts: int = typer.Option(10), batch: int = typer.Option(10),
                  sleep: bool = typer.Option(True, "--sleep/--no-sleep", help="run the night (LoRA only and both)"),
                  quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                  doc: Optional[Path] = SuiteDoc):
    """MEMIT only, LoRA only and both: time to first recall, recall right away and after a night, perplexity."""
    from .suites import ablation

    _suite_report(ablation(facts, batch, sleep, quick, home, _say), out, doc)


@eval_app.command("sweeps")
def eval_sweeps(lambdas: str = typer.Option("250,1000,4000,15000"),
                cov_samples: str = typer.Option("64,256,1024", "--cov-samples",
                                                help="covariance sample counts ('' for none)"),
                facts: int = typer.Option(20), batch: int = typer.Option(10), quick: bool = QuickOpt,
                home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Recall, unchanged probes and perplexity per lambda and per covariance sample count."""
    from .suites import sweeps

    _suite_report(sweeps(_csv(lambdas, float), _csv(cov_samples, int), facts, batch, quick, home, _say), out, doc)


@eval_app.command("week")
def eval_week(days: int = typer.Option(7), facts_per_day: int = typer.Option(20, "--facts-per-day"),
              quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
              doc: Optional[Path] = SuiteDoc):
    """Simulated days of new facts with a night after each: recall and perplexity per day."""
    from .suites import week

    _suite_report(week(days, facts_per_day, quick, home, _say), out, doc)


@eval_app.command("counterfact")
def eval_counterfact(records: int = typer.Option(1000), batch: int = typer.Option(10),
                     modes: str = typer.Option("none,alphaedit,nullspace"),
                     data: Path = typer.Option(Path("../shared/data/counterfact-2k.json"),
                                               help="CounterFact JSON (EasyEdit layout)"),
                     quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                     doc: Optional[Path] = SuiteDoc):
    """CounterFact in sequential batches: efficacy, generalisation, specificity, fluency per editing mode."""
    from .suites import counterfact

    if not data.exists():
        _fail(f"CounterFact data {data} not found")
    _suite_report(counterfact(records, batch, _csv(modes), data, quick, home, _say), out, doc)


@eval_app.command("retrieval")
def eval_retrieval(facts: int = typer.Option(50), ks: str = typer.Option("1,3", help="facts retrieved per answer"),
                   batch: int = typer.Option(10, help="agentmem's facts per edit"),
                   latency_questions: int = typer.Option(10, "--latency-questions"), quick: bool = QuickOpt,
                   home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Retrieval memory (embeddings, facts in the prompt) beside agentmem on the same facts and base model."""
    from .suites import retrieval

    _suite_report(retrieval(facts, _csv(ks, int), batch, latency_questions, quick, home, _say), out, doc)


@eval_app.command("results")
def eval_results(results: Path = typer.Option(Path("docs/results"), help="folder of suite JSON files"),
                 doc: Path = typer.Option(Path("docs/RESULTS.md"))):
    """Regenerate RESULTS.md (and every plot) from the suite JSON files present."""
    from .suites.report import load_results, plot, render

    for name, result in load_results(results):
        plot(result, results / Path(name).with_suffix(".png").name)
    doc.write_text(render(results, doc))
    typer.echo(f"wrote {doc}")
