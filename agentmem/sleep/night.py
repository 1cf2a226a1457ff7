"""One night of sleep: train the adapter on every fact, graduate facts whose recall holds without their edit, gate, publish.

Per fact, stage 0..3 sets its MEMIT scale from the schedule (1.0, 0.5, 0.1,
0.0): after training, every active fact is tested with its edit at scale 0;
a pass moves it one stage on, a fail back to 0. The night is published (new
adapter, new scales, one version) only if recall of all facts and perplexity
pass the gate; otherwise nothing served changes and the report says why.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from ..facts import SHARED, Fact
from ..measure import contains, perplexity
from ..serving import generate, model_store
from ..serving.replica import Replica
from ..storage import published
from ..storage.atomic import write_json
from ..storage.layout import TRAINED_ON_FILE
from ..storage.ledger import ACTIVE, FORGOTTEN, SLEEP_ROLLED_BACK, SUPERSEDED, UNLEARNED
from ..writer.editor import WakeEditor
from .config import SleepConfig
from .train import REPLAY_QUESTIONS, Example, fact_examples, sample_texts, train_adapter


def _chat_recall(replica: Replica, facts: dict[str, Fact]) -> dict[str, bool]:
    answers = generate.chat_many(replica.net, replica.tok, [f.questions()[0] for f in facts.values()], 20)
    return {fid: contains(a, f.object) for (fid, f), a in zip(facts.items(), answers)}


def run_night(editor: WakeEditor, cfg: SleepConfig, reports_dir: Path, progress=None,
              night: str | None = None) -> dict:
    """Consolidate every active fact; returns the night's report (also written to `reports_dir`).

    With a `night` id the ledger records its start, and its end in the transaction that commits its outcome.
    """
    say = progress or (lambda m: None)
    t_start = time.perf_counter()
    ledger, store = editor.ledger, editor.store
    if night is not None:
        with editor.transaction():
            ledger.start_night(night)
    rows = ledger.facts(status=ACTIVE, scope=SHARED)  # users' facts stay in their own adapters
    facts = {r["id"]: Fact.parse(r["fact"]) for r in rows}
    stage = {r["id"]: int(r["stage"]) for r in rows}
    report: dict = {"started": time.time(), "facts": len(facts), "config": cfg.model_dump()}
    if night is not None:
        report["night"] = night
    if not facts:
        _settle(report, "nothing to consolidate", t_start, None)
        if night is not None:
            with editor.transaction():
                ledger.end_night(night, report)
        return _finish(report, reports_dir)

    current = published.newest(store.layout, ledger)
    # the night's copies run where the editor's model does
    device = editor.model.device.type
    replica = Replica(store.base_dir, device)

    # what the base model says, for replay and for unlearning facts that were forgotten or replaced
    trained = published.trained_on(current and current.adapter_dir)
    gone_rows = [row for fid in trained
                 if (row := ledger.get(fid)) is not None and row["status"] in (FORGOTTEN, SUPERSEDED)]
    gone = [row["id"] for row in gone_rows]
    kept_keys = {f.key for f in facts.values()}
    unlearn_q = [q for row in gone_rows if (f := Fact.parse(row["fact"])).key not in kept_keys
                 for q in [f.questions()[0], *f.paraphrases()]]
    say(f"sleep: {len(facts)} facts, {len(unlearn_q)} questions to unlearn")
    # Cumulative: on top of the last adapter, a fact it already holds (recalled without its edit last
    # night) is refreshed with one question; only new facts get every phrasing, so a night's cost
    # follows the day's new facts rather than everything ever learned. A night after a forget or a
    # replacement starts afresh: unlearning on top of the old adapter left a forgotten answer in place.
    start_from = current.adapter_dir if current is not None and current.adapter and not gone else None
    held = {fid for fid in trained if stage.get(fid, 0) >= 1} if start_from else set()
    examples = [ex for fid, f in facts.items() for ex in fact_examples(f)[: 1 if fid in held else None]]
    replay_q = REPLAY_QUESTIONS[: max(1, round(cfg.replay_ratio * len(examples)))]
    examples += [Example(q, a, "replay") for q, a in zip(replay_q, generate.chat_many(replica.net, replica.tok, replay_q, 40))]
    examples += [Example(q, a, "unlearn") for q, a in zip(unlearn_q, generate.chat_many(replica.net, replica.tok, unlearn_q, 40))]
    examples += [Example("", t, "text") for t in sample_texts(replica.net, replica.tok, cfg.text_replay, seed=cfg.seed)]
    report["prepare_seconds"] = round(time.perf_counter() - t_start, 1)
    work = Path(tempfile.mkdtemp(prefix=".night-", dir=store.layout.store))
    try:
        trainee, _ = model_store.load(store.base_dir, device)
        say(f"sleep: training on {len(examples)} examples ({len(held)} facts refreshed)"
            + (" from the last adapter" if start_from else ""))
        report["training"] = train_adapter(trainee, replica.tok, examples, cfg, work / "adapter", start_from, say,
                                           check=editor.ensure_held)
        del trainee
        (work / "adapter" / TRAINED_ON_FILE).write_text(json.dumps(sorted(facts)))
        first, last = report["training"]["loss_first"], report["training"]["loss_last"]
        if not math.isfinite(last) or last > max(2 * first, first + 1.0):
            why = f"training diverged (loss {first} -> {last})"
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        # before: what is served now
        editor.ensure_held()
        if current is not None:
            replica.apply(current)
        t0 = time.perf_counter()
        before = _chat_recall(replica, facts)
        ppl_before = perplexity(replica.net, replica.tok)
        report["before"] = {"recall": _frac(before), "perplexity": round(ppl_before, 3),
                            "seconds": round(time.perf_counter() - t0, 1)}

        # graduation: every fact's edit at 0 together, recall asked of the new adapter alone
        editor.ensure_held()
        replica.set_adapter(f"night-{int(time.time())}", work / "adapter")
        replica.set_tensors(store.named(store.materialise([])))
        t0 = time.perf_counter()
        alone = _chat_recall(replica, facts)
        new_stage = {fid: min(stage[fid] + 1, len(cfg.schedule) - 1) if alone[fid] else 0 for fid in facts}
        scales = {fid: cfg.schedule[s] for fid, s in new_stage.items()}
        report["adapter_alone"] = {"recall": _frac(alone), "seconds": round(time.perf_counter() - t0, 1)}

        # after: the new adapter with the new scales, as it would be served
        editor.ensure_held()
        after_active = [(fid, scales[fid]) for fid in facts]
        replica.set_tensors(store.named(store.materialise(after_active)))
        after = _chat_recall(replica, facts)
        ppl_after = perplexity(replica.net, replica.tok)
        report["after"] = {"recall": _frac(after), "perplexity": round(ppl_after, 3)}
        report["stages"] = {fid: {"fact": facts[fid].statement, "stage": [stage[fid], new_stage[fid]],
                                  "scale": scales[fid], "recalled_alone": alone[fid], "recalled": after[fid]}
                            for fid in facts}

        why = _gate(cfg, before, after, ppl_before, ppl_after)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        graduated = sum(1 for s in scales.values() if s == 0)
        report["dissolved"] = round(graduated / len(facts), 3)

        def commit(n: int) -> None:
            for fid in facts:
                ledger.restage(fid, new_stage[fid], scales[fid])
            for fid in gone:
                ledger.event(fid, UNLEARNED, version=n)
            _settle(report, "published", t_start, n)
            if night is not None:
                ledger.end_night(night, report)

        editor.publish_night(work / "adapter", [TRAINED_ON_FILE], sorted(facts), after_active, commit)
        return _finish(report, reports_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)



def _roll_back(editor: WakeEditor, report: dict, reports_dir: Path, t_start: float, why: str,
               night: str | None) -> dict:
    _settle(report, f"rolled back: {why}", t_start, None)
    with editor.transaction():
        editor.ledger.event(None, SLEEP_ROLLED_BACK, reason=why)
        if night is not None:
            editor.ledger.end_night(night, report)
    return _finish(report, reports_dir)


def _frac(hits: dict[str, bool]) -> float:
    return round(sum(hits.values()) / max(len(hits), 1), 4)


def _gate(cfg: SleepConfig, before: dict, after: dict, ppl_before: float, ppl_after: float) -> str | None:
    if _frac(after) < _frac(before) - cfg.max_recall_drop:
        lost = [fid for fid in before if before[fid] and not after[fid]]
        return f"chat recall fell from {_frac(before)} to {_frac(after)} ({len(lost)} facts lost)"
    if ppl_after > ppl_before * (1 + cfg.max_perplexity_rise):
        return (f"perplexity rose from {ppl_before:.2f} to {ppl_after:.2f}, "
                f"more than {cfg.max_perplexity_rise:.0%}")
    return None


def _settle(report: dict, outcome: str, t_start: float, published_version: int | None) -> None:
    """Put the night's outcome and duration in its report."""
    report.update(outcome=outcome, version=published_version, seconds=round(time.perf_counter() - t_start, 1))


def _finish(report: dict, reports_dir: Path) -> dict:
    """Write the report to `reports_dir`; returns it."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(report["started"]))
    write_json(Path(reports_dir) / f"night-{stamp}.json", report)
    return report

