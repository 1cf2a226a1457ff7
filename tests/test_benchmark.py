"""The wake benchmark runs end to end (small sizes) and reports every number the issue asks for."""

import json
from pathlib import Path

import pytest
import torch

from agentmem.bench.edit import edit_benchmark
from agentmem.measure import HELDOUT, PROBE_TRUTHS, UNRELATED_CHAT, UNRELATED_RAW, drift, specificity, text_nll

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact-2k.json"


@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact-2k.json is not beside this checkout")
@pytest.mark.full
def test_quick_edit_benchmark_reports_all_numbers(tmp_path):
    # constraints off is exercised by test_retention; two modes keep this test a few minutes shorter
    out = edit_benchmark(home=tmp_path, counterfact=COUNTERFACT, quick=True, modes=("nullspace", "alphaedit"))
    json.dumps(out)
    assert set(out["seconds_per_fact"]) == {"1", "4"}
    assert all(v > 0 for v in out["seconds_per_fact"].values())
    # the batch just edited is completed and answered (chance is 0: the people are made up)
    assert out["recall_batch"]["raw"] >= 0.5 and out["recall_batch"]["chat"] >= 0.5, out["recall_batch"]
    ppl = out["perplexity"]
    assert ppl["before"] > 1 and ppl["after"] > 1
    assert abs(ppl["drift"] - (ppl["after"] / ppl["before"] - 1)) < 1e-3
    assert ppl["interval_95"][0] <= ppl["drift"] <= ppl["interval_95"][1]
    assert ppl["texts"] == len(HELDOUT)
    cf = out["counterfact"]
    assert set(cf) == {"nullspace", "alphaedit"}
    assert cf["nullspace"]["n"] == 6 and cf["nullspace"]["efficacy"] >= 0.5


@pytest.mark.full
def test_the_day_window_edits_fresh_facts_and_judges_each_goal_on_the_worst_seed(tmp_path):
    out = edit_benchmark(home=tmp_path, wake=False, seeds=1, day_facts=4)["day_window"]
    run = out["runs"][0]
    assert run["facts"] == 4 and run["seed"] == 101 and run["seconds_per_fact"] > 0
    # made-up people: only the edits can name their objects
    assert run["chat"] >= 0.75 and run["first_batch_chat"] >= 0.75, run["misses"]
    assert 0 <= run["right_kept"] <= 1 and abs(run["drift"]) < 0.05
    # kept answers are judged on the knowledge probes the unedited model gets right: well over a hundred
    assert run["right_of"] >= 100 and run["right_kept_ci95"][0] <= run["right_kept"] <= run["right_kept_ci95"][1]
    assert out["met"]["chat"] == (run["chat"] >= 0.95)


def test_drift_interval_says_how_much_text_the_estimate_rests_on():
    gen = torch.Generator().manual_seed(1)

    def texts(n):
        # each text's NLL moves by its own amount: 0.01 nats per token on average, 0.1 apart
        change = 0.01 + 0.1 * torch.randn(n, generator=gen)
        return [(30.0, 20)] * n, [(30.0 + 20 * c.item(), 20) for c in change]

    small, large = drift(*texts(16)), drift(*texts(160))
    for d in (small, large):
        lo, hi = d["interval_95"]
        assert lo < d["drift"] < hi
    width = lambda d: d["interval_95"][1] - d["interval_95"][0]
    assert 2 < width(small) / width(large) < 5  # about sqrt(10)
    assert width(small) > 0.04  # 16 texts cannot tell a +1 % drift from none
    same = drift(*[[(30.0, 20)] * 16] * 2)
    assert same["drift"] == 0 and same["interval_95"] == [0, 0]
    before, after = texts(16)
    with pytest.raises(ValueError, match="same texts"):
        drift(before, after[:-1])


def test_specificity_counts_right_answers_lost_not_reworded():
    truths = [("Paris",), None, ("Shakespeare",), ("Jupiter",)]
    before = ["The capital of France is Paris.", "He lives in Ohio.", "William Shakespeare wrote it.", "Neptune."]
    after = ["Paris is the capital of France.", "He lives in Utah.", "L'Etoile, la France", "Jupiter."]
    s = specificity(before, after, truths)
    assert s["unchanged"] == 0 and s["right_before"] == 2 and s["right_kept"] == 0.5
    assert s["right_lost"] == [{"before": before[2], "after": after[2]}]
    with pytest.raises(ValueError, match="same probes"):
        specificity(before, after[:-1], truths)
    assert len(PROBE_TRUTHS) == len(UNRELATED_CHAT) + len(UNRELATED_RAW)


def test_heldout_text_is_distinct_and_large_enough_to_measure_a_small_drift():
    assert len(HELDOUT) == len(set(HELDOUT)) >= 150
    assert all(t.strip() == t and len(t.split()) >= 8 for t in HELDOUT)


def test_text_nll_in_batches_equals_text_by_text(model_dir):
    from agentmem.serving import model_store

    model, tok = model_store.load(model_dir)
    texts = HELDOUT[:20] + ["Short one.", HELDOUT[0] + " " + HELDOUT[1]]  # lengths differ: rows are padded
    alone = text_nll(model, tok, texts, batch=1)
    together = text_nll(model, tok, texts, batch=8)
    assert [c for _, c in together] == [c for _, c in alone]
    assert all(c > 0 for _, c in alone)
    for (a, _), (b, _) in zip(alone, together):
        assert abs(a - b) < 1e-2, (a, b)  # float32 sums in another order: ~3e-3 nats at most seen
