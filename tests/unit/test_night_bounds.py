"""What keeps a night's cost bounded, without a model: the samples of held facts, the interval that says what
an audited sample tells of them all, and the saved state a stopped `agentmem eval week` resumes from."""

import random

import pytest
from typer.testing import CliRunner

from agentmem.bench.cli import eval_app
from agentmem.bench.run_state import RunState, RunStateError
from agentmem.facts import Fact
from agentmem.sleep.audit import estimate, nearest_first, plan_night, sample, wilson


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
