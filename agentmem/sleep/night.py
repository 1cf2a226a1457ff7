"""One night of sleep: train the adapter on the day's facts, graduate the facts that are due, gate, publish.
The shared scope's night (run_night) and each user's (run_user_night) are gated and published apart: a user's
night trains that user's own adapter on the shared model as served, and publishes only them.

Per fact, stage 0..3 sets its MEMIT scale from the schedule (1.0, 0.5, 0.1,
0.0): after training, every fact not yet at the last stage is tested with its
edit at scale 0; a pass moves it one stage on, a fail back to 0. Each part is
bounded by the day's new facts and fixed sizes, not by every fact ever learned:
facts the adapter the night starts from already holds are refreshed and audited
through random samples (audit.plan_night). The night is published (new
adapter, new scales, one version) only if recall of the audited facts,
perplexity and (where `max_knowledge_drop` is set) right answers to knowledge
probes pass the gate; otherwise nothing served changes and the report says
why. A fact the new adapter answers alone but loses beside its edit at the
lower scale keeps its stage instead; an audited fact still not answered is edited
again through the new adapter (`repair`) before the gate judges.
The report's `parts` say where the night's time went.
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

import torch

from ..facts import SHARED, Fact
from ..measure import KNOWLEDGE_DEV, contains, knowledge_answers, knowledge_kept, perplexity
from ..serving import generate, model_store
from ..serving.adapter_slot import param_of
from ..serving.replica import Replica
from ..storage import published
from ..storage.atomic import write_json
from ..storage.layout import TRAINED_ON_FILE, Layout
from ..storage.ledger import ACTIVE, FORGOTTEN, RE_EDITED, SLEEP_ROLLED_BACK, SUPERSEDED, UNLEARNED, Ledger
from ..storage.lora_adapter import lora_deltas, merge_adapters, write_user_lora
from ..storage.published import Published, newest_user
from ..writer.editor import WakeEditor
from .audit import NightPlan, estimate, plan_night
from .config import SleepConfig
from .train import Example, night_examples, train_adapter


def _chat_recall(replica: Replica, facts: dict[str, Fact]) -> dict[str, bool]:
    if not facts:
        return {}
    answers = generate.chat_many(replica.net, replica.tok, [f.questions()[0] for f in facts.values()], 20)
    return {fid: contains(a, f.object) for (fid, f), a in zip(facts.items(), answers)}


@contextmanager
def _clock(report: dict, name: str):
    """Add the block's seconds to the report's part `name` (a part may run in several blocks); yields the part."""
    part = report["parts"].setdefault(name, {"seconds": 0.0})
    t0 = time.perf_counter()
    try:
        yield part
    finally:
        part["seconds"] = round(part["seconds"] + time.perf_counter() - t0, 2)


def run_night(editor: WakeEditor, cfg: SleepConfig, reports_dir: Path, progress=None,
              night: str | None = None) -> dict:
    """Consolidate the shared scope's active facts; returns the night's report (also written to `reports_dir`).

    With a `night` id the ledger records its start, and its end in the transaction that commits its outcome.
    """
    say = progress or (lambda m: None)
    t_start = time.perf_counter()
    ledger, store = editor.ledger, editor.store
    facts, stage, scale, report = _begin(editor, SHARED, cfg, night)  # users' facts stay in their own adapters
    if not facts:
        return _nothing(editor, report, reports_dir, t_start, night)

    with _clock(report, "prepare") as part:
        current = published.newest(store.layout, ledger)
        # the night's copies run where the editor's model does
        replica = Replica(store.base_dir, editor.model.device.type)
        trained = published.trained_on(current and current.adapter_dir)
        gone, unlearn_q = _gone(ledger, trained, facts)
        # Cumulative, on top of the last adapter; a night after a forget or a replacement starts afresh:
        # unlearning on top of the old adapter left a forgotten answer in place.
        start_from = current.adapter_dir if current is not None and current.adapter and not gone else None
        plan = _plan(cfg, facts, stage, trained if start_from else [], current.version if current else 0)
        # what the base model says, for replay and for unlearning facts that were forgotten or replaced
        examples = _examples(replica, cfg, facts, plan, unlearn_q, part, (str(store.base_dir), 0))
    known_base = _base_knowledge(report, replica, cfg, store.base_dir)  # what knowledge kept is judged on
    say(f"sleep: {len(facts)} facts ({len(plan.fresh)} fresh, {len(plan.refresh)} of {len(plan.held)} held "
        f"refreshed), {len(unlearn_q)} questions to unlearn")
    audited, due = _subset(facts, plan.audited), _subset(facts, plan.due)
    work = Path(tempfile.mkdtemp(prefix=".night-", dir=store.layout.store))
    try:
        with _clock(report, "training") as part:
            part.update(_train(editor, replica, cfg, examples, facts, work / "adapter", start_from, say))
        why = _diverged(part)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        # before: what is served now
        editor.ensure_held()
        if current is not None:
            replica.apply(current)
        before, ppl_before = _audit(report, replica, audited)
        known_before = _knowledge(report, replica, cfg)

        # graduation: every edit at 0 together, recall of the due facts asked of the new adapter alone
        editor.ensure_held()
        replica.set_adapter(f"night-{int(time.time())}", work / "adapter")
        replica.set_tensors(store.named(store.materialise([])))
        with _clock(report, "graduation") as part:
            alone = _chat_recall(replica, due)
            part["asks"] = len(due)
        new_stage, scales = _graduate(cfg, stage, scale, alone)

        # after: the new adapter with the new scales, as it would be served
        def serve(tag: str, active: list[tuple[str, float]]) -> None:
            editor.ensure_held()
            replica.set_tensors(store.named(store.materialise(active)))

        after = _after(report, replica, cfg, audited, stage, new_stage, scales, serve)
        after = _repair(report, editor, replica, cfg, SHARED, audited, before, after, new_stage, scales,
                        work / "adapter", serve)
        after_active = [(fid, scales[fid]) for fid in facts]
        ppl_after, known = _checks_after(report, replica, cfg, known_base, known_before)
        _recall_report(report, plan, before, alone, after, ppl_before, ppl_after, new_stage, stage, scales,
                       lambda fid: {"fact": facts[fid].statement})

        why = _gate(cfg, before, after, ppl_before, ppl_after, known)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)
        commit = _committer(ledger, report, t_start, night, new_stage, scales, gone)
        editor.publish_night(work / "adapter", [TRAINED_ON_FILE], sorted(facts), after_active, commit)
        return _finish(report, reports_dir)
    finally:
        _tidy(editor, work)


def run_user_night(editor: WakeEditor, scope: str, cfg: SleepConfig, reports_dir: Path, progress=None,
                   night: str | None = None) -> dict:
    """Consolidate one user's active facts into their own night adapter, trained on the shared model as it is
    served, gated on that user's recall and published (or rolled back) as that user's next version alone.

    Returns the report, also written to `reports_dir`; it names facts by id only (their statements stay in
    the ledger, which forgets them with the user).
    """
    if scope == SHARED or not editor.owns(scope):
        raise ValueError("a user's night runs on the writer shard of that user")
    say = progress or (lambda m: None)
    t_start = time.perf_counter()
    ledger, store = editor.ledger, editor.store
    facts, stage, scale, report = _begin(editor, scope, cfg, night)
    if not facts:
        return _nothing(editor, report, reports_dir, t_start, night)

    with _clock(report, "prepare") as part:
        shared = published.newest(store.layout, ledger)
        current = newest_user(store.layout, ledger, scope)
        sleep_now = current and current.sleep
        trained = published.trained_on(sleep_now)
        gone, unlearn_q = _gone(ledger, trained, facts)
        start_from = sleep_now if sleep_now is not None and not gone else None
        plan = _plan(cfg, facts, stage, trained if start_from else [], f"{scope}:{current.version if current else 0}")
        replica = Replica(store.base_dir, editor.model.device.type)
        if shared is not None:
            replica.apply(shared)  # what the user's adapter is added to when served
        # a version number names its weights within one home only
        examples = _examples(replica, cfg, facts, plan, unlearn_q, part,
                             (str(store.base_dir), 0) if shared is None
                             else (str(store.layout.home.resolve()), shared.version))
    known_base = _knowledge(report, replica, cfg)  # the shared model's answers: the user's memory is judged on them
    say(f"sleep: one user's {len(facts)} facts ({len(plan.fresh)} fresh), {len(unlearn_q)} questions to unlearn")
    audited, due = _subset(facts, plan.audited), _subset(facts, plan.due)
    work = Path(tempfile.mkdtemp(prefix=".night-", dir=store.layout.store))
    try:
        with _clock(report, "training") as part:
            part.update(_train(editor, replica, cfg, examples, facts, work / "sleep", start_from, say, shared))
        why = _diverged(part)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)

        def serve(tag: str, user: Path | None) -> None:
            """Make the replica answer as the server would with this user adapter (one adapter per request)."""
            srcs = [d for d in (user, shared and shared.adapter_dir) if d is not None]
            if srcs:
                merge_adapters(srcs, work / tag, store.base_dir)
            replica.set_adapter(f"{tag}-{time.time_ns()}" if srcs else None, work / tag if srcs else None)

        def user_adapter(tag: str, active: list[tuple[str, float]]) -> Path:
            write_user_lora(work / tag, editor.user_layers(active), editor.arch, store.base_dir, work / "sleep")
            return work / tag

        editor.ensure_held()
        serve("before", current and current.path)
        before, ppl_before = _audit(report, replica, audited)
        known_before = _knowledge(report, replica, cfg)

        editor.ensure_held()
        serve("alone", user_adapter("alone-user", []))
        with _clock(report, "graduation") as part:
            alone = _chat_recall(replica, due)
            part["asks"] = len(due)
        new_stage, scales = _graduate(cfg, stage, scale, alone)

        def serve_user(tag: str, active: list[tuple[str, float]]) -> None:
            editor.ensure_held()
            serve(tag, user_adapter(f"{tag}-user", active))

        after = _after(report, replica, cfg, audited, stage, new_stage, scales, serve_user)
        after = _repair(report, editor, replica, cfg, scope, audited, before, after, new_stage, scales,
                        work / "sleep", serve_user)
        after_active = [(fid, scales[fid]) for fid in facts]
        ppl_after, known = _checks_after(report, replica, cfg, known_base, known_before)
        _recall_report(report, plan, before, alone, after, ppl_before, ppl_after, new_stage, stage, scales,
                       lambda fid: {})
        why = _gate(cfg, before, after, ppl_before, ppl_after, known)
        if why:
            return _roll_back(editor, report, reports_dir, t_start, why, night)
        commit = _committer(ledger, report, t_start, night, new_stage, scales, gone, user_version=True)
        editor.publish_user_night(scope, work / "sleep", sorted(facts), after_active, commit)
        return _finish(report, reports_dir)
    finally:
        _tidy(editor, work)


def users_due(ledger: Ledger, layout: Layout, cfg: SleepConfig) -> list[str]:
    """The users a night would change: facts their night adapter was not trained on, or still graduating."""
    by_user: dict[str, list[dict]] = {}
    for r in ledger.facts(status=ACTIVE):
        if r["scope"] != SHARED:
            by_user.setdefault(r["scope"], []).append(r)
    due = []
    for scope, rows in sorted(by_user.items()):
        current = newest_user(layout, ledger, scope)
        trained = set(published.trained_on(current and current.sleep))
        if {r["id"] for r in rows} != trained or any(int(r["stage"]) < len(cfg.schedule) - 1 for r in rows):
            due.append(scope)
    return due


def _begin(editor: WakeEditor, scope: str, cfg: SleepConfig, night: str | None):
    """The scope's active facts, their stages and scales, and the night's report begun (its start recorded)."""
    if night is not None:
        with editor.transaction():
            editor.ledger.start_night(night)
    rows = editor.ledger.facts(status=ACTIVE, scope=scope)
    report: dict = {"started": time.time(), "facts": len(rows), "config": cfg.model_dump(), "parts": {}}
    if scope != SHARED:
        report["scope"] = "user"
    if night is not None:
        report["night"] = night
    return ({r["id"]: Fact.parse(r["fact"]) for r in rows}, {r["id"]: int(r["stage"]) for r in rows},
            {r["id"]: float(r["scale"]) for r in rows}, report)


def _nothing(editor: WakeEditor, report: dict, reports_dir: Path, t_start: float, night: str | None) -> dict:
    _settle(report, "nothing to consolidate", t_start, None)
    if night is not None:
        with editor.transaction():
            editor.ledger.end_night(night, report)
    return _finish(report, reports_dir)


def _gone(ledger: Ledger, trained: list[str], facts: dict[str, Fact]) -> tuple[list[str], list[str]]:
    """Facts the adapter was trained on that were forgotten or replaced since, and the questions to unlearn
    (those of them no active fact answers now)."""
    rows = [row for fid in trained
            if (row := ledger.get(fid)) is not None and row["status"] in (FORGOTTEN, SUPERSEDED)]
    kept_keys = {f.key for f in facts.values()}
    questions = [q for row in rows if (f := Fact.parse(row["fact"])).key not in kept_keys
                 for q in [f.questions()[0], *f.paraphrases()]]
    return [row["id"] for row in rows], questions


def _plan(cfg: SleepConfig, facts: dict[str, Fact], stage: dict[str, int], trained: list[str], drawn_for) -> NightPlan:
    """Which facts tonight trains, asks and graduates; `trained`: what the adapter it starts from was trained on.
    The samples are drawn anew each night (`drawn_for`: the version it starts from), the same on a rerun."""
    held = {fid for fid in trained if stage.get(fid, 0) >= 1}
    return plan_night(facts, stage, held, len(cfg.schedule) - 1, cfg.refresh_sample, cfg.audit_sample,
                      random.Random(f"{cfg.seed}:{drawn_for}"))


def _subset(facts: dict[str, Fact], ids: list[str]) -> dict[str, Fact]:
    return {fid: facts[fid] for fid in ids}


def _examples(replica: Replica, cfg: SleepConfig, facts: dict[str, Fact], plan: NightPlan, unlearn_q: list[str],
              part: dict, state: tuple) -> list[Example]:
    """The night's training data (train.night_examples) for its plan, `state` naming what the replica holds;
    counts in `part`."""
    examples, counts = night_examples(replica.net, replica.tok, cfg, [facts[fid] for fid in plan.fresh],
                                      [facts[fid] for fid in plan.refresh], unlearn_q, state)
    part.update(fresh=len(plan.fresh), held=len(plan.held), examples=counts)
    return examples


def _audit(report: dict, replica: Replica, audited: dict[str, Fact],
           perplexity_too: bool = True) -> tuple[dict[str, bool], float | None]:
    """Recall of the audited facts (and perplexity) as the replica answers now, timed in the report."""
    with _clock(report, "audit") as part:
        hits = _chat_recall(replica, audited)
        part["asks"] = part.get("asks", 0) + len(audited)
    if not perplexity_too:
        return hits, None
    with _clock(report, "perplexity"):
        return hits, perplexity(replica.net, replica.tok)


def _knowledge(report: dict, replica: Replica, cfg: SleepConfig) -> list[str]:
    """The replica's answers to the gate's knowledge probes (spread over the development half), timed."""
    probes = _gate_probes(cfg)
    if not probes:
        return []
    with _clock(report, "knowledge") as part:
        part["asks"] = part.get("asks", 0) + len(probes)
        return knowledge_answers(replica.net, replica.tok, probes)


# the base model's answers to the gate's probes, by (model folder, probes asked): they never change, and a worker
# process runs a night after night
_BASE_ANSWERS: dict[tuple[str, int], list[str]] = {}


def _base_knowledge(report: dict, replica: Replica, cfg: SleepConfig, base_dir: Path) -> list[str]:
    """`_knowledge` of the replica while it holds the base model alone, once per process."""
    key = (str(base_dir), len(_gate_probes(cfg)))
    if key not in _BASE_ANSWERS:
        _BASE_ANSWERS[key] = _knowledge(report, replica, cfg)
    return _BASE_ANSWERS[key]


def _gate_probes(cfg: SleepConfig) -> list[dict]:
    """The development-half probes the knowledge gate judges a night on: none while the gate is off."""
    n = min(cfg.knowledge_probes, len(KNOWLEDGE_DEV)) if cfg.max_knowledge_drop < 1 else 0
    return [KNOWLEDGE_DEV[i * len(KNOWLEDGE_DEV) // n] for i in range(n)]


def _after(report: dict, replica: Replica, cfg: SleepConfig, audited: dict[str, Fact], stage: dict,
           new_stage: dict, scales: dict, serve) -> dict[str, bool]:
    """Serve the night's stages (`serve(tag, active)`) and ask the audited facts. A fact lost there whose stage
    moved on keeps its stage (its edit at the scale it had) this night, and recall is asked again: the adapter
    can answer a fact alone that its edit at a lower scale then pulls off (`new_stage`, `scales` are updated)."""
    serve("after", [(fid, scales[fid]) for fid in scales])
    after, _ = _audit(report, replica, audited, perplexity_too=False)
    kept = [fid for fid in after if not after[fid] and new_stage[fid] > stage[fid]]
    if kept:
        for fid in kept:
            new_stage[fid], scales[fid] = stage[fid], cfg.schedule[stage[fid]]
        serve("kept", [(fid, scales[fid]) for fid in scales])
        after, _ = _audit(report, replica, audited, perplexity_too=False)
    report["kept_stage"] = len(kept)
    return after


def _repair(report: dict, editor: WakeEditor, replica: Replica, cfg: SleepConfig, scope: str,
            audited: dict[str, Fact], before: dict, after: dict, new_stage: dict, scales: dict, night: Path,
            serve) -> dict[str, bool]:
    """Edit the audited facts not recalled as served after the night (at most `cfg.repair`, those recalled
    before it first) again, through the night's adapter in folder `night`, and ask again: their edits were
    computed without that adapter. A repaired fact starts over at stage 0, its new edit at full scale."""
    lost = sorted((fid for fid in audited if not after[fid]), key=lambda fid: not before[fid])[: cfg.repair]
    report["repaired"] = {"facts": lost}
    if not lost:
        return after
    with _clock(report, "repair") as part:
        editor.ensure_held()
        stats = editor.repair(scope, _subset(audited, lost), [(fid, scales[fid]) for fid in scales], night)
        part.update(facts=len(lost), rounds=stats["rounds"])
    for fid in lost:
        new_stage[fid], scales[fid] = 0, cfg.schedule[0]
    serve("repaired", [(fid, scales[fid]) for fid in scales])
    after, _ = _audit(report, replica, audited, perplexity_too=False)
    report["repaired"]["recalled"] = sum(after[fid] for fid in lost)
    return after


def _checks_after(report: dict, replica: Replica, cfg: SleepConfig, known_base: list[str],
                  known_before: list[str]) -> tuple[float, dict | None]:
    """Perplexity and right answers kept on the knowledge probes as the replica serves the night's result.

    Kept is judged against the model without this scope's memory, before and after: the day's edits already
    cost some answers that a night may give back, and a net figure does not charge the night for the day.
    None where the gate asks no probes.
    """
    with _clock(report, "perplexity"):
        ppl = perplexity(replica.net, replica.tok)
    probes = _gate_probes(cfg)
    if not probes:
        report["knowledge"] = {"probes": 0}
        return ppl, None
    after = _knowledge(report, replica, cfg)
    was, now = knowledge_kept(known_base, known_before, probes), knowledge_kept(known_base, after, probes)
    lost_before = {x["ask"] for x in was["right_lost"]}
    report["knowledge"] = {
        "probes": len(probes), "right_of": now["right_before"], "kept_before": round(was["right_kept"], 4),
        "kept_after": round(now["right_kept"], 4),
        "lost": [x["ask"] for x in now["right_lost"] if x["ask"] not in lost_before],
        "regained": sorted(lost_before - {x["ask"] for x in now["right_lost"]})}
    return ppl, report["knowledge"]


def _graduate(cfg: SleepConfig, stage: dict[str, int], scale: dict[str, float],
              alone: dict[str, bool]) -> tuple[dict[str, int], dict[str, float]]:
    """The due facts' new stages (one on if the adapter alone recalls them, else back to 0), and every fact's
    scale (those not due keep theirs)."""
    last = len(cfg.schedule) - 1
    new_stage = {fid: min(stage[fid] + 1, last) if hit else 0 for fid, hit in alone.items()}
    return new_stage, {**scale, **{fid: cfg.schedule[s] for fid, s in new_stage.items()}}


def _recall_report(report: dict, plan: NightPlan, before: dict, alone: dict, after: dict, ppl_before: float,
                   ppl_after: float, new_stage: dict, stage: dict, scales: dict, describe) -> None:
    report["before"] = {"recall": _frac(before), "perplexity": round(ppl_before, 3)}
    report["adapter_alone"] = {"recall": _frac(alone)}
    report["after"] = {"recall": _frac(after), "perplexity": round(ppl_after, 3)}
    # what the audited sample says of every held fact
    report["parts"]["audit"]["held"] = estimate(sum(after[fid] for fid in plan.audited_held), len(plan.audited_held),
                                                len(plan.held))
    report["stages"] = {fid: {**describe(fid), "stage": [stage[fid], new_stage[fid]], "scale": scales[fid],
                              "recalled_alone": alone.get(fid), "recalled": after.get(fid)} for fid in new_stage}
    report["dissolved"] = round(sum(1 for sc in scales.values() if sc == 0) / len(scales), 3)


def _train(editor: WakeEditor, replica: Replica, cfg: SleepConfig, examples: list[Example], facts: dict[str, Fact],
           dest: Path, start_from: Path | None, say, onto: Published | None = None) -> dict:
    """Train the night's adapter into `dest` (with the facts it was trained on beside it) on a fresh copy of the
    base model, or of the shared model as `onto` serves it; returns the training's statistics."""
    trainee, _ = model_store.load(editor.store.base_dir, editor.model.device.type)
    if onto is not None:
        _merge_into(trainee, onto)
    stats = train_adapter(trainee, replica.tok, examples, cfg, dest, start_from, say, check=editor.ensure_held)
    (dest / TRAINED_ON_FILE).write_text(json.dumps(sorted(facts)))
    return stats


@torch.no_grad()
def _merge_into(model, pub: Published) -> None:
    """Make `model` the shared model as `pub` serves it: its edited tensors, and its adapter added in."""
    for name, t in pub.tensors().items():
        param_of(model, name).copy_(t)
    for name, d in lora_deltas(pub.adapter_dir) if pub.adapter_dir is not None else ():
        param_of(model, name).add_(d.to(model.dtype))


def _diverged(training: dict) -> str | None:
    first, last = training["loss_first"], training["loss_last"]
    if not math.isfinite(last) or last > max(2 * first, first + 1.0):
        return f"training diverged (loss {first} -> {last})"
    return None


def _committer(ledger: Ledger, report: dict, t_start: float, night: str | None, new_stage: dict, scales: dict,
               gone: list[str], user_version: bool = False):
    """What a published night changes in the ledger, in the transaction that publishes it."""
    t_publish = time.perf_counter()

    def commit(n: int) -> None:
        for fid in new_stage:
            ledger.restage(fid, new_stage[fid], scales[fid])
        at = {"user_version": n} if user_version else {"version": n}
        for fid in gone:
            ledger.event(fid, UNLEARNED, **at)
        for fid in report["repaired"]["facts"]:
            ledger.event(fid, RE_EDITED, reason="edited again through the night's adapter", **at)
        report["parts"]["publish"] = {"seconds": round(time.perf_counter() - t_publish, 2)}
        _settle(report, "published", t_start, n)
        if night is not None:
            ledger.end_night(night, report)

    return commit


def _roll_back(editor: WakeEditor, report: dict, reports_dir: Path, t_start: float, why: str,
               night: str | None) -> dict:
    _settle(report, f"rolled back: {why}", t_start, None)
    with editor.transaction():
        editor.ledger.event(None, SLEEP_ROLLED_BACK, reason=why)
        if night is not None:
            editor.ledger.end_night(night, report)
    return _finish(report, reports_dir)


def _tidy(editor: WakeEditor, work: Path) -> None:
    """A night that did not publish leaves nothing staged (its repairs) and no work folder."""
    if editor.store.staged:
        editor.drop_staged()
    shutil.rmtree(work, ignore_errors=True)


def _frac(hits: dict[str, bool]) -> float:
    return round(sum(hits.values()) / max(len(hits), 1), 4)


def _gate(cfg: SleepConfig, before: dict, after: dict, ppl_before: float, ppl_after: float,
          known: dict | None) -> str | None:
    if _frac(after) < _frac(before) - cfg.max_recall_drop:
        lost = [fid for fid in before if before[fid] and not after[fid]]
        return (f"chat recall of the {len(before)} audited facts fell from {_frac(before)} to {_frac(after)} "
                f"({len(lost)} facts lost)")
    if ppl_after > ppl_before * (1 + cfg.max_perplexity_rise):
        return (f"perplexity rose from {ppl_before:.2f} to {ppl_after:.2f}, "
                f"more than {cfg.max_perplexity_rise:.0%}")
    if known is not None and known["kept_after"] < known["kept_before"] - cfg.max_knowledge_drop - 1e-9:  # at the limit passes
        return (f"right answers kept on the knowledge probes fell from {known['kept_before']} to "
                f"{known['kept_after']} (of {known['right_of']}), more than {cfg.max_knowledge_drop}")
    return None


def _settle(report: dict, outcome: str, t_start: float, published_version: int | None) -> None:
    """Put the night's outcome and duration in its report."""
    report.update(outcome=outcome, version=published_version, seconds=round(time.perf_counter() - t_start, 1))


def _finish(report: dict, reports_dir: Path) -> dict:
    """Write the report to `reports_dir`; returns it."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(report["started"]))
    write_json(Path(reports_dir) / f"night-{stamp}.json", report)
    return report

