"""`agentmem eval`: the benchmarks and evaluation suites, each printing JSON.

Each command imports its benchmark when it runs: the command line starts without loading them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cli.common import HomeOpt, JsonOpt, ModelOpt, fail, say

eval_app = typer.Typer(help="benchmarks (JSON)")


def _report(result: dict, out: Optional[Path]) -> None:
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)


@eval_app.command("edit")
def eval_edit(
    home: Optional[Path] = HomeOpt, model: Optional[str] = ModelOpt, as_json: bool = JsonOpt,
    counterfact: Optional[Path] = typer.Option(None, help="CounterFact JSON (EasyEdit layout)"),
    records: int = typer.Option(200, help="CounterFact records to apply"),
    quick: bool = typer.Option(False, help="smaller sizes, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
    modes: str = typer.Option("nullspace,none,alphaedit", help="CounterFact constraint modes, comma-separated"),
    wake: bool = typer.Option(True, help="run the fictional-facts part"),
    seeds: int = typer.Option(0, help="the day window: this many sets of fresh facts, each in a new memory "
                                      "(0: not run)"),
    day_facts: int = typer.Option(50, "--day-facts", help="facts in a day window (edited in batches of 10)"),
    night: bool = typer.Option(False, "--night", help="sleep after each day window and measure again"),
):
    """Wake-editor benchmark: speed, recall, specificity, perplexity drift, CounterFact."""
    from .edit import edit_benchmark

    result = edit_benchmark(home=home, model=model, counterfact=counterfact, records=records, quick=quick,
                            progress=say, modes=tuple(modes.split(",")), wake=wake, seeds=seeds,
                            day_facts=day_facts, night=night)
    _report(result, out)


@eval_app.command("users")
def eval_users(
    home: Optional[Path] = HomeOpt,
    users: int = typer.Option(3, help="users, each with their own memory"),
    facts_per_user: int = typer.Option(5, help="facts told by each user"),
    quick: bool = typer.Option(False, help="2 users of 2 facts, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Per-user memory: own recall against one shared memory, cross-user leaks, bytes per user, forget_user."""
    from .users import users_benchmark

    _report(users_benchmark(users, facts_per_user, home=home, quick=quick, progress=say), out)


@eval_app.command("serve-users")
def eval_serve_users(
    home: Optional[Path] = HomeOpt,
    engine: str = typer.Option("auto", help="vllm, embedded, or auto"),
    users: int = typer.Option(8, help="users, each with their own adapter"),
    requests: int = typer.Option(16, help="requests in flight at once"),
    max_tokens: int = typer.Option(64),
    quick: bool = typer.Option(False, help="2 users, 4 requests, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Per-user serving: user publish latency, tokens/s with many users' adapters against one and none."""
    from .serve import users_serving_benchmark

    _report(users_serving_benchmark(home, engine, users, requests, max_tokens, quick, progress=say), out)


@eval_app.command("parallel")
def eval_parallel(
    redis_url: str = typer.Option("redis://127.0.0.1:6379/0", "--redis-url", envvar="AGENTMEM_REDIS_URL"),
    facts_per_user: int = typer.Option(8, help="facts of each user (one user per shard)"),
    quick: bool = typer.Option(False, help="2 facts per user, for tests"),
    workers: str = typer.Option("1,2", help="the numbers of worker processes to compare, comma-separated"),
    postgres: Optional[str] = typer.Option(None, help="a PostgreSQL server URL without a database "
                                           "(postgresql+psycopg://user@host:5432): each run's ledger in a new "
                                           "database there, dropped after; default: SQLite"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Writers in parallel: facts/s with N worker processes on N users' shards against 1 worker."""
    from .parallel import parallel_writers_benchmark

    try:
        counts = tuple(int(w) for w in workers.split(","))
        if not counts or min(counts) < 1:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"--workers must be positive numbers separated by commas, got {workers!r}")
    _report(parallel_writers_benchmark(redis_url, facts_per_user, quick, progress=say, workers=counts,
                                       postgres=postgres), out)


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
    from .pipeline import EXTRACTION_SET, pipeline_benchmark

    dataset = dataset or EXTRACTION_SET
    if not dataset.exists():
        fail(f"extraction dataset {dataset} not found")
    result = pipeline_benchmark(dataset, home=home, redis_url=redis_url, facts=facts, quick=quick,
                                progress=say)
    _report(result, out)


@eval_app.command("extraction")
def eval_extraction(
    dataset: Optional[Path] = typer.Option(None, help="snippets (JSONL, a category each); default: the held-out set"),
    extractor: str = typer.Option("rules", envvar="AGENTMEM_EXTRACTOR",
                                  help="llm or both: also score the model extractor and both"),
    extractor_url: Optional[str] = typer.Option(None, envvar="AGENTMEM_EXTRACTOR_URL",
                                                help="default: agentmem serve at 127.0.0.1:8000"),
    extractor_model: Optional[str] = typer.Option(None, envvar="AGENTMEM_EXTRACTOR_MODEL",
                                                  help="default: agentmem (the served model)"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Extraction precision and recall, overall and per category: the rules, the model extractor and both."""
    from .extraction import HELDOUT_SET, extraction_benchmark

    dataset = dataset or HELDOUT_SET
    if not dataset.exists():
        fail(f"extraction dataset {dataset} not found")
    _report(extraction_benchmark(dataset, extractor, extractor_url, extractor_model), out)


@eval_app.command("extraction-lora")
def eval_extraction_lora(
    adapter: Path = typer.Option(..., help="the extraction adapter's folder: trained into it unless it holds one"),
    model: Optional[str] = ModelOpt,
    dataset: Optional[Path] = typer.Option(None, help="snippets (JSONL, a category each); default: the dev set"),
    examples: int = typer.Option(2000, min=16, help="generated snippets to train on"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """The bundled model with a LoRA adapter trained to extract on generated snippets, scored alone and
    beside the rules (schema-constrained, in this process)."""
    from ..config import Settings
    from ..serving.model_store import ModelError, resolve
    from .extraction import DEV_SET
    from .extraction_lora import lora_benchmark

    dataset = dataset or DEV_SET
    if not dataset.exists():
        fail(f"extraction dataset {dataset} not found")
    settings = Settings(**({"model": model} if model else {}))
    try:
        model_dir = resolve(settings.model, settings.cache_dir)
    except ModelError as e:
        fail(str(e))
    _report(lora_benchmark(model_dir, adapter, dataset, examples, progress=say), out)


@eval_app.command("serve")
def eval_serve(
    home: Optional[Path] = HomeOpt,
    engine: str = typer.Option("auto", "--engine", help="vllm, embedded, or auto (vllm if installed)"),
    edits: int = typer.Option(10, help="facts edited one at a time for the publish latency"),
    requests: int = typer.Option(16, help="chat requests per throughput run"),
    concurrency: int = typer.Option(4, help="requests in flight at once"),
    max_tokens: int = typer.Option(64, help="tokens per chat answer"),
    quick: bool = typer.Option(False, help="small sizes, for tests"),
    servers: int = typer.Option(1, min=1, help="model servers following the one ledger"),
    postgres: Optional[str] = typer.Option(None, help="a PostgreSQL server URL without a database: the ledger "
                                           "in a new database there, dropped after; default: SQLite"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
):
    """Serving benchmark: publish latency p50/p95 (until every server answers with the version), bytes per
    publish, chat tokens/s with and without an adapter."""
    from .serve import serve_benchmark

    result = serve_benchmark(home=home, engine=engine, edits=edits, requests=requests, concurrency=concurrency,
                             max_tokens=max_tokens, quick=quick, progress=say, servers=servers, postgres=postgres)
    _report(result, out)


@eval_app.command("sleep")
def eval_sleep(
    home: Optional[Path] = HomeOpt,
    days: int = typer.Option(3, help="simulated days, a night after each"),
    facts_per_day: int = typer.Option(50, "--facts-per-day"),
    quick: bool = typer.Option(False, help="2 days of 6 facts, for tests"),
    out: Optional[Path] = typer.Option(None, help="also write the JSON here"),
    resume: bool = typer.Option(False, "--resume", help="continue the run saved under --home from its last finished day"),
):
    """Sleep benchmark: recall, paraphrase recall, perplexity drift, dissolved edits, night duration and work per day."""
    from .sleep import sleep_benchmark

    from .run_state import RunStateError

    if resume and home is None:
        fail("--resume needs the --home the run was saved in")
    try:
        result = sleep_benchmark(home=home, days=days, facts_per_day=facts_per_day, quick=quick,
                                 progress=say, resume=resume)
    except RunStateError as e:
        fail(str(e))
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


def _resumable(run, resume: bool, home: Optional[Path]) -> dict:
    """run() of a suite that saves its state in `home`, a saved run's conflicts as one line."""
    from .run_state import RunStateError

    if resume and home is None:
        fail("--resume needs the --home the run was saved in")
    try:
        return run()
    except RunStateError as e:
        fail(str(e))


@eval_app.command("capacity")
def eval_capacity(sizes: str = typer.Option("10,20,50,100,200,500", help="facts at which recall is measured"),
                  batch: int = typer.Option(10, help="facts per sequential edit"),
                  modes: str = typer.Option("nullspace,none", help="constraint modes, comma-separated"),
                  quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                  doc: Optional[Path] = SuiteDoc):
    """Recall of every fact so far against the number of facts, constraints on and off."""
    from .suites import capacity

    _suite_report(capacity(_csv(sizes, int), batch, _csv(modes), quick, home, say), out, doc)


@eval_app.command("retention")
def eval_retention(batches: int = typer.Option(5, help="sequential batches"), batch: int = typer.Option(10),
                   modes: str = typer.Option("nullspace,none"), quick: bool = QuickOpt,
                   home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Recall of the first batch as later batches arrive."""
    from .suites import retention

    _suite_report(retention(batches, batch, _csv(modes), quick, home, say), out, doc)


@eval_app.command("ablation")
def eval_ablation(facts: int = typer.Option(10), batch: int = typer.Option(10),
                  sleep: bool = typer.Option(True, "--sleep/--no-sleep", help="run the night (LoRA only and both)"),
                  quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                  doc: Optional[Path] = SuiteDoc):
    """MEMIT only, LoRA only and both: time to first recall, recall right away and after a night, perplexity."""
    from .suites import ablation

    _suite_report(ablation(facts, batch, sleep, quick, home, say), out, doc)


@eval_app.command("sweeps")
def eval_sweeps(lambdas: str = typer.Option("250,1000,4000,15000"),
                cov_samples: str = typer.Option("64,256,1024", "--cov-samples",
                                                help="covariance sample counts ('' for none)"),
                facts: int = typer.Option(20), batch: int = typer.Option(10), quick: bool = QuickOpt,
                home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Recall, unchanged probes and perplexity per lambda and per covariance sample count."""
    from .suites import sweeps

    _suite_report(sweeps(_csv(lambdas, float), _csv(cov_samples, int), facts, batch, quick, home, say), out, doc)


@eval_app.command("week")
def eval_week(days: int = typer.Option(7), facts_per_day: int = typer.Option(20, "--facts-per-day"),
              quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
              doc: Optional[Path] = SuiteDoc,
              resume: bool = typer.Option(False, "--resume", help="continue the run saved under --home (its "
                                          "memory and sleep-state.json, saved after every day) where it stopped")):
    """Simulated days of new facts with a night after each: recall, perplexity and the night's work per day."""
    from .suites import week

    _suite_report(_resumable(lambda: week(days, facts_per_day, quick, home, say, resume), resume, home), out, doc)


@eval_app.command("adapter-capacity")
def eval_adapter_capacity(ranks: str = typer.Option("1,8", help="LoRA ranks, comma-separated"),
                          sizes: str = typer.Option("60,120,240", help="facts each adapter learns in one night"),
                          quick: bool = QuickOpt, home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut,
                          doc: Optional[Path] = SuiteDoc,
                          resume: bool = typer.Option(False, "--resume", help="continue the run saved under --home "
                                                      "after its last finished point")):
    """How many facts one night's adapter holds, by rank: recall of the adapter alone against the facts it learned."""
    from .suites import adapter_capacity

    rank_list, size_list = _csv(ranks, int), _csv(sizes, int)
    if not rank_list or not size_list or min(rank_list + size_list) < 1 or max(rank_list) > 256:
        fail(f"--ranks {ranks!r} --sizes {sizes!r}: give ranks from 1 to 256 and sizes from 1, comma-separated")
    _suite_report(_resumable(lambda: adapter_capacity(rank_list, size_list, quick, home, say, resume), resume, home),
                  out, doc)


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
        fail(f"CounterFact data {data} not found")
    _suite_report(counterfact(records, batch, _csv(modes), data, quick, home, say), out, doc)


@eval_app.command("retrieval")
def eval_retrieval(facts: int = typer.Option(50), ks: str = typer.Option("1,3", help="facts retrieved per answer"),
                   batch: int = typer.Option(10, help="agentmem's facts per edit"),
                   latency_questions: int = typer.Option(10, "--latency-questions"), quick: bool = QuickOpt,
                   home: Optional[Path] = SuiteHome, out: Optional[Path] = SuiteOut, doc: Optional[Path] = SuiteDoc):
    """Retrieval memory (embeddings, facts in the prompt) beside agentmem on the same facts and base model."""
    from .suites import retrieval

    _suite_report(retrieval(facts, _csv(ks, int), batch, latency_questions, quick, home, say), out, doc)


@eval_app.command("results")
def eval_results(results: Path = typer.Option(Path("docs/results"), help="folder of suite JSON files"),
                 doc: Path = typer.Option(Path("docs/RESULTS.md"))):
    """Regenerate RESULTS.md (and every plot) from the suite JSON files present."""
    from .suites.report import load_results, plot, render

    for name, result in load_results(results):
        plot(result, results / Path(name).with_suffix(".png").name)
    doc.write_text(render(results, doc))
    typer.echo(f"wrote {doc}")
