"""The day window's verdict, without a model: a goal is met only when the worst of the seeds meets it."""

from agentmem.bench.edit import DAY_GOALS, _met, _spread


def _run(seed: int, chat: float, drift: float) -> dict:
    return {"seed": seed, "facts": 50, "batch": 10, "seconds_per_fact": 0.9, "chat": chat, "paraphrase": 0.85,
            "first_batch_chat": 1.0, "right_kept": 1.0, "drift": drift, "misses": []}


def test_the_spread_is_over_seeds_and_leaves_out_the_sizes():
    summary = _spread([_run(101, 1.0, 0.01), _run(102, 0.9, 0.02), _run(103, 0.95, 0.05)])
    assert summary["chat"] == {"mean": 0.95, "min": 0.9, "max": 1.0}
    assert summary["drift"]["max"] == 0.05
    assert not {"seed", "facts", "batch", "misses"} & set(summary)


def test_one_bad_seed_fails_a_goal_and_figures_not_measured_are_not_judged():
    good = _met(_spread([_run(101, 1.0, 0.01), _run(102, 0.96, 0.02)]))
    assert all(good.values()) and "drift_after_night" not in good
    bad = _met(_spread([_run(101, 1.0, 0.01), _run(102, 0.9, 0.04)]))
    assert not bad["chat"] and not bad["drift"] and bad["paraphrase"] and bad["seconds_per_fact"]
    assert set(bad) == set(DAY_GOALS) - {"drift_after_night"}
