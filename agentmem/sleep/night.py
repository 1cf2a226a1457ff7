"""One night of sleep: train the adapter on the day's facts, graduate the facts that are due, gate, publish.

Per fact, stage 0..3 sets its MEMIT scale from the schedule (1.0, 0.5, 0.1,
0.0): after training, every fact not yet at the last stage is tested with its
edit at scale 0; a pass moves it one stage on, a fail back to 0. Each part is
bounded by the day's new facts and fixed sizes, not by every fact ever learned:
facts the last adapter already holds are refreshed and audited through random
samples of `refresh_sample` and `audit_sample`. The night is published (new
adapter, new scales, one version) only if recall of the audited facts and
perplexity pass the gate; otherwise nothing served changes and the report says
why. The report's `parts` say where the night's time went.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..facts import Fact
from ..measure import contains, perplexity
from ..serving import generate, model_store
from ..serving.replica import Replica
from ..storage import published
from ..storage.atomic import write_json
from ..storage.layout import TRAINED_ON_FILE
from ..storage.ledger import ACTIVE, FORGOTTEN, SLEEP_ROLLED_BACK, SUPERSEDED, UNLEARNED
from ..writer.editor import WakeEditor
from .audit import estimate, nearest_first, sample
from .config import SleepConfig
from .train import REPLAY_QUESTIONS, Example, fact_examples, sample_texts, train_adapter


def _chat_recall(replica: Replica, facts: dict[str, Fact]) -> dict[str, bool]:
    answers = generate.chat_many(replica.net, replica.tok, [f.questions()[0] for f in facts.values()], 20)
    return {fid: contains(a, f.object) for (fid, f), a in zip(facts.items(), answers)}


def _trained_on(adapter_dir: Path | None) -> list[str]:
    if adapter_dir is None:
        return []
    try:
        return json.loads((adapter_dir / TRAINED_ON_FILE).read_text())
    except (OSError, ValueError):
        return []


@contextmanager
def _clock(parts: dict, name: str):
    """Add the block's seconds to the report's part `name` (a part may run in several blocks); yields the part."""
    part = parts.setdefault(name, {"seconds": 0.0})
    t0 = time.perf_counter()
    try:
        yield part
    finally:
        part["seconds"] = round(part["seconds"] + time.perf_counter() - t0, 2)


def run_night(editor: WakeEditor, cfg: SleepConfig, reports_dir: Path, progress=None,
              night: str | None = None) -> dict:
    """Consolidate the active facts; returns the night's report (also written to `reports_dir`).

    With a `night` id the ledger records its start, and its end in the transaction that commits its outcome.
    """
    say = progress or (lambda m: None)
    t_start = time.perf_counter()
    ledger, store = editor.ledger, editor.store
    if night is not None:
        with ledger.transaction(editor.fence):
            ledger.start_night(night)
    rows = ledger.facts(status=ACTIVE)
    facts = {r["id"]: Fact.parse(r["fact"]) for r in rows}
    stage = {r["id"]: int(r["stage"]) for r in rows}
    scale = {r["id"]: float(r["scale"]) for r in rows}
    parts: dict = {}
    report: dict = {"started": time.time(), "facts": len(facts), "config": cfg.model_dump(), "parts": parts}
    if night is not None:
        report["night"] = night
    if not facts:
        _settle(report, "nothing to consolidate", t_start, None)
        if night is not None:
            with ledger.transaction(editor.fence):
                ledger.end_night(night, report)
        return _finish(report, reports_dir)

    last = len(cfg.schedule) - 1
    with _clock(parts, "prepare") as part:
        current = published.newest(store.layout, ledger)
        # the night's copies run where the editor's model does
        device = editor.model.device.type
        replica = Replica(store.base_dir, device)

        # what the base model says, for replay and for unlearning facts that were forgotten or replaced
        trained = set(_trained_on(current and current.adapter_dir))
        gone_rows = [row for fid in sorted(trained)
                     if (row := ledger.get(fid)) is not None and row["status"] in (FORGOTTEN, SUPERSEDED)]
        gone = [row["id"] for row in gone_rows]
        kept_keys = {f.key for f in facts.values()}
        unlearn_q = [q for row in gone_rows if (f := Fact.parse(row["fact"])).key not in kept_keys
                     for q in [f.questions()[0], *f.paraphrases()]]
        # Cumulative: on top of the last adapter, facts it already holds (recalled without their edit on an
        # earlier night) are only sampled: `refresh_sample` of them retrained with one question, `audit_sample`
        # asked by the gate. Fresh facts (new, replacing one, or failed last night) get every phrasing and
        # every check. A night after a forget or a replacement starts afresh, every fact fresh: unlearning
        # on top of the old adapter left a forgotten answer in place.
        start_from = current.adapter_dir if current is not None and current.adapter and not gone else None
        held = [fid for fid in facts if fid in trained and stage[fid] >= 1] if start_from else []
        held_set = set(held)
        fresh = [fid for fid in facts if fid not in held_set]
        # drawn anew each night (every day publishes a version), the same on a rerun of the same night
        rng = random.Random(f"{cfg.seed}:{current.version if current else 0}")
        # held facts of a fresh fact's relation first: tonight's training pulls their questions toward its answers
        fresh_relations = {facts[fid].relation for fid in fresh}
        refresh = nearest_first(held, {fid for fid in held if facts[fid].relation in fresh_relations},
                                cfg.refresh_sample, rng)
        # a draw of its own, so the estimate of held recall is not biased toward the facts just retrained
        audited_held = sample(held, cfg.audit_sample, rng)
        audited = {fid: facts[fid] for fid in fresh + audited_held}
        # due: not yet at the last stage; audited facts at the last stage are asked too, so a lost one
        # gets its edit back
        due = {fid: facts[fid] for fid in facts if stage[fid] < last or fid in audited}
        say(f"sleep: {len(facts)} facts ({len(fresh)} fresh, {len(refresh)} of {len(held)} held refreshed), "
            f"{len(unlearn_q)} questions to unlearn")
        examples = [ex for fid in fresh for ex in fact_examples(facts[fid])]
        new_examples = len(examples)
        examples += [fact_examples(facts[fid])[0] for fid in refresh]
        replay_q = REPLAY_QUESTIONS[: max(1, round(cfg.replay_ratio * len(examples)))]
        examples += [Example(q, a, "replay") for q, a in zip(replay_q, generate.chat_many(replica.net, replica.tok, replay_q, 40))]
        examples += [Example(q, a, "unlearn") for q, a in zip(unlearn_q, generate.chat_many(replica.net, replica.tok, unlearn_q, 40))]
        texts = sample_texts(replica.net, replica.tok, cfg.text_replay, seed=cfg.seed)
        examples += [Example("", t, "text") for t in texts]
        part.update(fresh=len(fresh), held=len(held), examples={
            "new": new_examples, "refresh": len(refresh), "replay": len(replay_q), "unlearn": len(unlearn_q),
            "text": len(texts)})
    work = Path(tempfile.mkdtemp(prefix=".night-", dir=store.layout.store))
    try:
        with _clock(parts, "training") as part:
            trainee, _ = model_store.load(store.base_dir, device)
            say(f"sleep: training on {len(examples)} examples" + (" from the last adapter" if start_from else ""))
            part.update(train_adapter(trainee, replica.tok, examples, cfg, work / "adapter", start_from, say,
                                      check=editor.ensure_held))
            del trainee
        (work / "adapter" / TRAINED_ON_FILE).write_text(json.dumps(sorted(facts)))
        first, loss = parts["training"]["loss_first"], parts["training"]["loss_last"]
        if not math.isfinite(loss) or loss > max(2 * first, first + 1.0):
            why = f"training diverged (loss {first} -> {loss})"
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        # before: what is served now
        editor.ensure_held()
        if current is not None:
            replica.apply(current)
        with _clock(parts, "audit"):
            before = _chat_recall(replica, audited)
        with _clock(parts, "perplexity"):
            ppl_before = perplexity(replica.net, replica.tok)

        # graduation: every edit at 0 together, recall of the due facts asked of the new adapter alone
        editor.ensure_held()
        replica.set_adapter(f"night-{int(time.time())}", work / "adapter")
        replica.set_tensors(store.named(store.materialise([])))
        with _clock(parts, "graduation") as part:
            alone = _chat_recall(replica, due)
        new_stage = {fid: min(stage[fid] + 1, last) if alone[fid] else 0 for fid in due}
        scales = {**scale, **{fid: cfg.schedule[s] for fid, s in new_stage.items()}}
        part["asks"] = len(due)

        # after: the new adapter with the new scales, as it would be served
        editor.ensure_held()
        after_active = [(fid, scales[fid]) for fid in facts]
        replica.set_tensors(store.named(store.materialise(after_active)))
        with _clock(parts, "audit") as part:
            after = _chat_recall(replica, audited)
        with _clock(parts, "perplexity"):
            ppl_after = perplexity(replica.net, replica.tok)
        part.update(asks=2 * len(audited), facts=len(audited),
                    held=estimate(sum(after[fid] for fid in audited_held), len(audited_held), len(held)))
        report["before"] = {"recall": _frac(before), "perplexity": round(ppl_before, 3)}
        report["adapter_alone"] = {"recall": _frac(alone)}
        report["after"] = {"recall": _frac(after), "perplexity": round(ppl_after, 3)}
        report["stages"] = {fid: {"fact": facts[fid].statement, "stage": [stage[fid], new_stage[fid]],
                                  "scale": scales[fid], "recalled_alone": alone[fid], "recalled": after.get(fid)}
                            for fid in due}

        why = _gate(cfg, before, after, ppl_before, ppl_after)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        report["dissolved"] = round(sum(1 for s in scales.values() if s == 0) / len(facts), 3)
        t_publish = time.perf_counter()

        def commit(n: int) -> None:
            for fid in due:
                ledger.restage(fid, new_stage[fid], scales[fid])
            for fid in gone:
                ledger.event(fid, UNLEARNED, version=n)
            parts["publish"] = {"seconds": round(time.perf_counter() - t_publish, 2)}
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
    with editor.ledger.transaction(editor.fence):
        editor.ledger.event(None, SLEEP_ROLLED_BACK, reason=why)
        if night is not None:
            editor.ledger.end_night(night, report)
    return _finish(report, reports_dir)


def _frac(hits: dict[str, bool]) -> float:
    return round(sum(hits.values()) / max(len(hits), 1), 4)


def _gate(cfg: SleepConfig, before: dict, after: dict, ppl_before: float, ppl_after: float) -> str | None:
    if _frac(after) < _frac(before) - cfg.max_recall_drop:
        lost = [fid for fid in before if before[fid] and not after[fid]]
        return (f"chat recall of the {len(before)} audited facts fell from {_frac(before)} to {_frac(after)} "
                f"({len(lost)} facts lost)")
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

