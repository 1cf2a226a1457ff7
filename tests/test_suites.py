"""The issue-7 evaluation suites at tiny sizes on the real model, and docs/RESULTS.md rendered from their JSON.

Each suite runs once, at the smallest size that still edits the model (one
fixture per suite, shared by its tests). CI's time allows retrieval, capacity
and the ablation (without its night) on every run; retention, sweeps,
CounterFact, the adapter's capacity and the week (as a quick month: 3 days of 4
facts, stopped after day 2 and resumed, its nights' work bounded by what each
day brought; about 15 minutes on 2 cores) run with AGENTMEM_TEST_FULL=1, and
their RESULTS.md sections are rendered from the committed docs/results JSON
otherwise.
"""

import importlib
import json
import os
from pathlib import Path

import pytest

from agentmem.bench import suites
from agentmem.bench.suites import report
from agentmem.bench.suites.counterfact import _saved, ngram_entropy
from agentmem.measure import KNOWLEDGE

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact-2k.json"
COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results"
FULL = os.environ.get("AGENTMEM_TEST_FULL") == "1"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("suites")


# One fixture per suite, each the smallest run that still edits: --durations shows what each costs.
@pytest.fixture(scope="module")
def retrieval(home):
    return suites.retrieval(facts=4, ks=(1,), batch=4, latency_questions=1, home=home / "retrieval")


@pytest.fixture(scope="module")
def capacity(home):
    return suites.capacity(sizes=(1,), batch=1, modes=("nullspace",), home=home / "capacity")


@pytest.fixture(scope="module")
def retention(home):
    if not FULL:
        return None
    return suites.retention(batches=1, batch=1, modes=("none",), home=home / "retention")


@pytest.fixture(scope="module")
def ablation(home):
    return suites.ablation(facts=1, sleep=False, home=home / "ablation")


@pytest.fixture(scope="module")
def sweeps(home):
    if not FULL:
        return None
    return suites.sweeps(lambdas=(1000.0,), cov_samples=(), facts=1, batch=1, home=home / "sweeps")


@pytest.fixture(scope="module")
def counterfact(home):
    if not FULL or not COUNTERFACT.exists():
        return None
    return suites.counterfact(records=2, batch=2, modes=("nullspace",), data=COUNTERFACT, home=home / "counterfact")


# Samples smaller than the 8 facts held by night 3, and a schedule whose last stage (edit at 0) day-1 facts
# reach on night 2, so that the quick month's third night refreshes, audits and graduates only part of them.
# Training as by default: with 8 text passages instead of 32 (15-25 steps of 8 a night, not 30), nights 1 taught
# 1 or 2 of their 4 facts well enough to graduate, and one was rolled back.
MONTH_SLEEP = {"refresh_sample": 4, "audit_sample": 4, "schedule": [1.0, 0.1, 0.0]}


@pytest.fixture(scope="module")
def week(home):
    if not FULL:
        return None
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AGENTMEM_SLEEP", json.dumps(MONTH_SLEEP))
        # right answers kept on 8 knowledge probes, not all 503 (35 s a day)
        stopped = suites.week(days=2, facts_per_day=4, home=home / "week", probes=KNOWLEDGE[:8])
        month = suites.week(days=3, facts_per_day=4, home=home / "week", resume=True, probes=KNOWLEDGE[:8])
    return {**month, "stopped": stopped["days"]}


@pytest.fixture(scope="module")
def adapter_capacity(home):
    if not FULL:
        return None
    return suites.adapter_capacity(quick=True, home=home / "adapter-capacity")


@pytest.fixture(scope="module")
def results(retrieval, capacity, retention, ablation, sweeps, counterfact, week, adapter_capacity):
    found = {"retrieval": retrieval, "capacity": capacity, "retention": retention, "ablation": ablation,
             "sweeps": sweeps, "counterfact": counterfact, "week": week, "adapter-capacity": adapter_capacity}
    return {name: r for name, r in found.items() if r is not None}


def test_retrieval_recalls_the_facts_it_was_given(retrieval):
    r = retrieval
    top1 = r["retrieval"]["top1"]
    # the embedder finds the right sentence among four, and the model answers from it
    assert top1["chat_retrieved"] == 1.0
    assert top1["chat"] >= 0.75, top1
    assert top1["chat_context_tokens"] > 5 and top1["seconds_per_write"] > 0 and top1["seconds_per_answer"] > 0
    a = r["agentmem"]
    assert a["chat"] >= 0.75 and a["context_tokens"] == 0 and a["seconds_per_write"] > 0, a


def test_capacity_recalls_the_edited_fact(capacity):
    cap = capacity["runs"]["nullspace"]
    assert [row["facts"] for row in cap] == [1]
    assert cap[0]["recall"]["chat"] == 1.0, cap
    assert cap[0]["edit_seconds"] > 0


@pytest.mark.full
def test_retention_measures_the_first_batch(retention):
    ret = retention["runs"]["none"]
    assert [row["facts"] for row in ret] == [1]
    assert ret[0]["first_batch"]["chat"] == 1.0, ret


def test_ablation_memit_recalls_right_away(ablation):
    r = ablation
    memit = r["systems"]["memit_only"]
    assert r["base"]["recall"]["chat"] == 0.0  # the fictional fact is unknown to the base model
    assert memit["recall_right_away"]["chat"] == 1.0
    assert memit["time_to_first_recall_s"] is not None and memit["time_to_first_recall_s"] > 0
    assert memit["perplexity_right_away"] < 1.2 * r["base"]["perplexity"]


@pytest.mark.full
def test_sweep_reports_recall_probes_and_perplexity(sweeps):
    row = sweeps["lambda"][0]
    assert row["lambda"] == 1000.0 and row["recall"]["chat"] == 1.0
    assert row["probes_unchanged"] >= 0.5 and abs(row["perplexity_vs_base"]) < 0.2


@pytest.mark.full
def test_the_quick_month_resumes_after_its_last_finished_day(week, home):
    assert [d["day"] for d in week["days"]] == [1, 2, 3]
    assert week["days"][:2] == week["stopped"]  # taken from the saved state, not run again
    assert len(list((home / "week" / "sleep").glob("night-*.json"))) == 3
    assert all(d["night"] == "published" for d in week["days"]), week["days"]


@pytest.mark.full
def test_the_quick_months_third_night_costs_what_its_day_brought(week):
    first, third = (d["night_parts"] for d in (week["days"][0], week["days"][2]))
    print({d["day"]: (d["night_steps"], d["night_asks"], d["night_seconds"]) for d in week["days"]})
    # Training: night 3 trains on what night 1 did (4 new facts' 8 phrasings, 16 replays, 32 text passages: 56
    # examples, 14 batches of 4) plus at most refresh_sample (4) one-question refreshes and replay_ratio (2.0)
    # as many replays: 12 examples more, 3 batches an epoch, so steps grow by 17/14 at most. That holds while the
    # day brings 4 fresh facts: day 2's all graduated on night 2, so none is trained in full again.
    assert third["prepare"]["fresh"] == 4, week["days"]
    assert third["prepare"]["examples"]["refresh"] == MONTH_SLEEP["refresh_sample"] < third["prepare"]["held"] == 8
    assert third["training"]["steps"] <= 1.5 * first["training"]["steps"], (first, third)
    # Asks: night 1 has no held facts, so its 12 (4 audited twice, 4 graduated) are a floor, not a
    # yardstick; night 3's are bounded by sizes, not by the 12 facts so far: the gate asks its 4 new facts
    # and audit_sample (4) held ones twice, once more when a fact lost beside its lower edit keeps its stage and
    # once more when lost facts are edited again; graduation the facts not at the last stage and the audited.
    audits = 2 + bool(week["days"][2]["night_kept_stage"]) + bool(week["days"][2]["night_repaired"])
    assert third["audit"]["asks"] == audits * (4 + MONTH_SLEEP["audit_sample"]) < audits * 12
    at_last = week["days"][1]["stage_counts"]["2"]  # facts dissolved by night 2
    assert third["graduation"]["asks"] <= 12 - at_last + MONTH_SLEEP["audit_sample"]
    held = third["audit"]["held"]
    assert held["asked"] == 4 and held["of"] == 8 and held["method"] == "Wilson score interval"
    assert held["ci95"][0] <= held["recall"] <= held["ci95"][1]


@pytest.mark.full
def test_day_one_facts_are_answered_after_the_third_night(week, home):
    from agentmem import Memory
    from agentmem.bench.data import fictional_facts
    from agentmem.measure import contains

    assert week["days"][2]["chat_recall"] >= 11 / 12, week["days"]
    day_one = fictional_facts(12, seed=31)[:4]
    with Memory.open(home / "week", read_only=True) as mem:
        stages = {r["fact"]["subject"]: r["stage"] for r in mem.facts()}
        answers = [mem.ask(f.questions()[0]) for f in day_one]
    assert all(contains(a, f.object) for a, f in zip(answers, day_one)), answers
    assert [stages[f.subject] for f in day_one] == [2] * 4  # answered with their edits dissolved


@pytest.mark.full
def test_one_nights_adapter_alone_answers_the_facts_it_learned(adapter_capacity):
    [point] = adapter_capacity["points"]
    assert (point["rank"], point["facts"]) == (1, 3)
    # asked of the base model with only the adapter merged: what it answers, the adapter holds
    assert point["recall"]["chat"] >= 2 / 3, point
    assert point["parameters"] > 0 and point["steps"] > 0 and point["examples"]["new"] >= 3


@pytest.mark.full
def test_adapter_capacity_resumes_without_training_again_and_refuses_to_overwrite(adapter_capacity, home,
                                                                                  monkeypatch):
    from agentmem.bench.run_state import RunStateError

    # the suite's module, not the function of that name the package exports
    module = importlib.import_module("agentmem.bench.suites.adapter_capacity")
    monkeypatch.setattr(module, "train_adapter", lambda *a, **k: pytest.fail("a finished point was trained again"))
    again = suites.adapter_capacity(quick=True, home=home / "adapter-capacity", resume=True)
    assert again["points"] == adapter_capacity["points"]
    with pytest.raises(RunStateError, match="resume it"):
        suites.adapter_capacity(quick=True, home=home / "adapter-capacity")


@pytest.mark.full
@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact-2k.json is not beside this checkout")
def test_counterfact_scores_and_fluency(counterfact):
    r = counterfact
    s = r["modes"]["nullspace"]
    assert s["n"] == 2 and s["efficacy"] >= 0.5
    assert s["specificity"] >= 0.5  # the neighbours' answers mostly stay
    assert s["fluency"] > 1 and r["base"]["fluency"] > 1


@pytest.mark.full
@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact-2k.json is not beside this checkout")
def test_counterfact_run_again_in_its_home_reuses_finished_modes(counterfact, home):
    # a second run at the same sizes edits nothing: its scores are the first run's, edit time included
    again = suites.counterfact(records=2, batch=2, modes=("nullspace",), data=COUNTERFACT, home=home / "counterfact")
    assert again["modes"] == counterfact["modes"] and again["base"] == counterfact["base"]


def test_counterfact_scores_saved_at_other_sizes_are_not_reused(tmp_path):
    saved = tmp_path / "cf-none.json"
    sizes = {"records": 1000, "batch": 10, "data": "cf.json"}
    saved.write_text(json.dumps({"sizes": sizes, "scores": {"efficacy": 0.9}}))
    assert _saved(saved, sizes) == {"efficacy": 0.9}
    assert _saved(saved, {**sizes, "records": 20}) is None
    assert _saved(tmp_path / "cf-nullspace.json", sizes) is None


def test_ngram_entropy_scores_repetition_low():
    assert ngram_entropy("the cat the cat the cat the cat") < ngram_entropy("a quick brown fox jumps over lazy dogs")


def test_every_result_is_json_with_machine_and_command(results):
    for name, r in results.items():
        json.dumps(r)
        assert r["suite"] == name
        assert r["command"].startswith(f"agentmem eval {name} ")
        assert r["machine"]["torch_threads"] >= 1 and r["machine"]["cpu"]


def test_results_page_has_every_suite_table_plot_and_command(results, tmp_path):
    hand_made = {"suite": "week", "command": "agentmem eval week --days 1", "sizes": {"days": 1},
                 "machine": results["capacity"]["machine"],
                 "days": [{"day": 1, "facts_so_far": 3, "chat_recall": 1.0, "paraphrase_recall": 0.67, "raw_recall": 0.33,
                           "perplexity_vs_base": 0.012, "dissolved": 0.0, "night_seconds": 61.0,
                           "night_steps": 30, "night_asks": 12, "night": "published", "night_vs_first": 1.0,
                           "night_parts": {"prepare": {"seconds": 10.0, "held": 0}, "training": {"seconds": 40.0}},
                           "consolidated": {"facts": 0, "chat": None, "paraphrase": None}}]}
    # suites not run here are rendered from their committed results
    committed = {n: json.loads((COMMITTED / f"{n}.json").read_text()) for n in report.ORDER
                 if n not in results and (COMMITTED / f"{n}.json").exists()}
    rendered = {**committed, **results, "week": hand_made}
    docs = tmp_path / "docs"
    for name, r in rendered.items():
        report.write(r, docs / "results" / f"{name}.json", docs / "RESULTS.md")
    text = (docs / "RESULTS.md").read_text()
    for name in rendered:
        assert report.TITLES[name] in text
        assert f"![{name}](results/{name}.png)" in text
        assert (docs / "results" / f"{name}.png").stat().st_size > 1000
        assert f"--out docs/results/{name}.json`" in text
    assert "| 1 | 3 | 0 | 1 | 0.67 | 0.33 | - | +1.2% | - | 0% | 61 | 1 | prepare 10, training 40 | 30 | 12 | published |" in text
    assert text.index(report.TITLES["capacity"]) < text.index(report.TITLES["retrieval"])
