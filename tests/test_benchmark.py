"""The wake benchmark runs end to end (small sizes) and reports every number the issue asks for."""

import json
from pathlib import Path

import pytest

from agentmem.evaluate import edit_benchmark

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact-2k.json"


@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact-2k.json is not beside this checkout")
def test_quick_edit_benchmark_reports_all_numbers(tmp_path):
    # constraints off is exercised by test_retention; two modes keep this test a few minutes shorter
    out = edit_benchmark(home=tmp_path, counterfact=COUNTERFACT, quick=True, modes=("nullspace", "alphaedit"))
    json.dumps(out)
    assert set(out["seconds_per_fact"]) == {"1", "4"}
    assert all(v > 0 for v in out["seconds_per_fact"].values())
    for key in ("raw", "chat", "paraphrase"):
        assert 0 <= out["recall_batch"][key] <= 1
    assert out["recall_batch"]["chat"] >= 0.5
    assert out["perplexity"]["before"] > 1 and out["perplexity"]["after"] > 1
    cf = out["counterfact"]
    assert set(cf) == {"nullspace", "alphaedit"}
    assert cf["nullspace"]["n"] == 6 and cf["nullspace"]["efficacy"] >= 0.5
