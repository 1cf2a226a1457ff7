"""What keeps a night's cost bounded, without a model: the samples of held facts, the interval that says what
an audited sample tells of them all, and the saved state a stopped `agentmem eval week` resumes from."""

import random

import pytest
from typer.testing import CliRunner

from agentmem.bench.cli import eval_app
from agentmem.bench.run_state import RunState, RunStateError
from agentmem.facts import Fact
from agentmem.sleep.audit import estimate, nearest_first, plan_night, sample, wilson
from agentmem.sleep.config import SleepConfig
from agentmem.sleep.train import Example, _epochs


def test_a_sample_is_fixed_size_drawn_anew_and_all_when_there_are_few():
    held = [f"f{i}" for i in range(200)]
    one, other = sample(held, 16, random.Random("0:7")), sample(held, 16, random.Random("0:8"))
    assert len(one) == 16 == len(set(one)) and set(one) <= set(held)
    assert one == sorted(one, key=held.index)  # in the facts' own order
    assert one != other  # another night (another version) refreshes and audits other facts
    assert one == sample(held, 16, random.Random("0:7"))  # a rerun of the same night draws the same
    assert sample(held[:5], 16, random.Random(0)) == held[:5]


def test_the_refresh_takes_the_facts_a_nights_training_endangers_first():
    held = [f"f{i}" for i in range(10)]
    near = {"f2", "f5", "f7"}
    assert nearest_first(held, near, 2, random.Random(0)) in (["f2", "f5"], ["f2", "f7"], ["f5", "f7"])
    more = nearest_first(held, near, 5, random.Random(0))
    assert len(more) == 5 and near <= set(more) and more == sorted(more, key=held.index)
    assert nearest_first(held, set(), 3, random.Random(0)) == sample(held, 3, random.Random(0))
    assert nearest_first(held, near, 0, random.Random(0)) == []


def test_a_nights_work_follows_the_days_facts_however_many_are_held():
    def facts(n, start=0, relation="works at"):
        return {f"f{i}": Fact(subject=f"Person {i}", relation=relation, object=f"Place {i}") for i in range(start, start + n)}

    for held_count in (40, 400):
        known = facts(held_count)
        new = {**facts(3, held_count), **facts(2, held_count + 3, relation="plays the")}
        everything = {**known, **new}
        # the held facts are at the last stage but the newest 5, still graduating
        stage = {fid: 3 for fid in known} | {f"f{i}": 1 for i in range(5)} | {fid: 0 for fid in new}
        plan = plan_night(everything, stage, set(known), 3, refresh_sample=16, audit_sample=32,
                          rng=random.Random(f"0:{held_count}"))
        assert plan.fresh == list(new) and plan.held == list(known)
        assert len(plan.refresh) == 16 and len(plan.audited_held) == 32 and plan.audited[:5] == list(new)
        # graduation asks the fresh, the still-graduating and the audited: never all 400
        assert set(plan.due) == set(new) | {f"f{i}" for i in range(5)} | set(plan.audited_held)
        assert len(plan.due) <= 5 + 5 + 32
    # with fewer held facts than the samples every held fact is refreshed and audited
    small = facts(6)
    plan = plan_night(small, {fid: 3 for fid in small}, set(small), 3, 16, 32, random.Random(0))
    assert plan.refresh == plan.audited_held == list(small) and plan.fresh == []


def test_a_held_fact_is_refreshed_in_the_last_epochs_only_so_keeping_it_costs_less_than_learning_it():
    examples = ([Example(f"q{i}", "a", "fact") for i in range(80)] + [Example(f"h{i}", "a", "refresh") for i in range(360)]
                + [Example("r", "a", "replay")] * 24 + [Example("", "t", "text")] * 32)
    orders = _epochs(examples, SleepConfig(epochs=5, refresh_epochs=2))
    seen = [sum(i in o for o in orders) for i in range(len(examples))]
    assert seen[:80] == [5] * 80 and seen[80:440] == [2] * 360 and set(seen[440:]) == {5}
    # the refresh comes last, where nothing trained after it can pull the held facts away again
    assert [any(examples[i].kind == "refresh" for i in o) for o in orders] == [False, False, False, True, True]
    # at most every epoch, whatever is asked
    assert all(len(o) == len(examples) for o in _epochs(examples, SleepConfig(epochs=3, refresh_epochs=5)))


@pytest.mark.parametrize("hits, n, lo, hi", [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634),
                                             (32, 32, 0.8928, 1.0)])
def test_wilson_interval_matches_its_formula_at_the_edges_and_the_middle(hits, n, lo, hi):
    got = wilson(hits, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_held_recall_is_exact_when_every_held_fact_was_asked_and_an_interval_when_sampled():
    assert estimate(8, 8, 8) == {"recall": 1.0, "asked": 8, "of": 8, "ci95": [1.0, 1.0], "method": "every fact asked"}
    est = estimate(31, 32, 500)
    assert est["method"] == "Wilson score interval" and est["of"] == 500
    assert est["ci95"][0] < est["recall"] < est["ci95"][1] <= 1.0
    assert estimate(0, 0, 0)["recall"] is None  # no held facts yet: the first night


def test_a_stopped_run_resumes_with_what_it_had_saved(tmp_path):
    run = RunState.open(tmp_path, "sleep", {"facts_per_day": 4}, resume=False)
    run.data["result"] = {"days": [{"day": 1, "night_steps": 30}]}
    run.data["today"] = {"day": 2, "wake_seconds": 5.1}
    run.save()
    again = RunState.open(tmp_path, "sleep", {"facts_per_day": 4}, resume=True)
    assert again.data["result"]["days"] == [{"day": 1, "night_steps": 30}]
    assert again.data["today"] == {"day": 2, "wake_seconds": 5.1}  # day 2's edits are done; its night is not
    with pytest.raises(RunStateError, match="resume it"):
        RunState.open(tmp_path, "sleep", {"facts_per_day": 4}, resume=False)  # would start over on it
    with pytest.raises(RunStateError, match="started at"):
        RunState.open(tmp_path, "sleep", {"facts_per_day": 6}, resume=True)  # other facts per day
    assert RunState.open(tmp_path / "new", "sleep", {"facts_per_day": 4}, resume=True).data == {
        "sizes": {"facts_per_day": 4}}


def test_resume_without_a_home_is_refused_before_anything_loads():
    r = CliRunner().invoke(eval_app, ["week", "--days", "2", "--resume"])
    assert r.exit_code == 1 and "--resume needs the --home" in r.output


@pytest.mark.parametrize("args", [["--sizes", ""], ["--ranks", "0"], ["--ranks", "300"], ["--sizes", "60,-1"]])
def test_adapter_capacity_refuses_sizes_and_ranks_it_cannot_train_before_anything_loads(args):
    r = CliRunner().invoke(eval_app, ["adapter-capacity", *args])
    assert r.exit_code == 1 and "give ranks from 1 to 256 and sizes from 1" in r.output


def test_recall_with_the_edit_dissolved_counts_only_those_facts_and_reads_their_misses():
    from agentmem.bench.sleep import _consolidated

    oslo, ikea = Fact(subject="Ann Roe", relation="lives in", object="Oslo"), \
        Fact(subject="Bo Lin", relation="works at", object="Ikea")
    r = {"misses": [{"fact": ikea.statement, "raw": "", "chat": "Bo Lin works at Ikea.", "paraphrase": "No idea."}]}
    assert _consolidated(r, [oslo, ikea]) == {"facts": 2, "chat": 1.0, "paraphrase": 0.5}
    assert _consolidated(r, []) == {"facts": 0, "chat": None, "paraphrase": None}


def test_the_weeks_page_shows_each_nights_parts_against_the_facts_held_at_nightfall(tmp_path):
    from agentmem.bench.suites import report

    def day(n: int, held: int, train: float) -> dict:
        return {"day": n, "facts_so_far": 40 * n, "chat_recall": 1.0, "paraphrase_recall": 0.9, "raw_recall": 0.4,
                "perplexity_vs_base": 0.01, "right_kept": 1.0, "dissolved": 0.5, "night_seconds": train + 20, "night_vs_first": 1.0,
                "night_steps": 75, "night_asks": 90, "night": "published",
                "night_parts": {"prepare": {"seconds": 20.0, "held": held, "fresh": 40},
                                "training": {"seconds": train, "steps": 75}},
                "consolidated": {"facts": held, "chat": 0.95 if held else None, "paraphrase": 0.9 if held else None}}

    week = {"suite": "week", "days": [day(1, 0, 300.0), day(2, 40, 310.0)]}
    table = report._week_table(week)
    assert "| 2 | 80 | 40 | 1 | 0.9 | 0.4 | 0.95 / 0.9 of 40 | +1.0% | 1 | 50% | 330 | 1 | prepare 20, training 310 |" in table
    report.plot(week, tmp_path / "week.png")
    assert (tmp_path / "week.png").stat().st_size > 1000
