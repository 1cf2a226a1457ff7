"""The knowledge probes that "right answers kept" is judged on: well formed, and counted as a user would."""

import pytest

from agentmem.measure import KNOWLEDGE, knowledge_kept
from agentmem.sleep.train import REPLAY_QUESTIONS


def test_the_probes_are_many_distinct_and_name_answers_a_substring_cannot_fake():
    assert len(KNOWLEDGE) >= 200
    assert len({p["ask"] for p in KNOWLEDGE}) == len(KNOWLEDGE)
    assert {type(p["raw"]) for p in KNOWLEDGE} == {bool}
    for p in KNOWLEDGE:
        assert p["truth"] and all(isinstance(t, str) for t in p["truth"]), p
        # "Au" or "ice" would be found inside unrelated words of a wrong answer
        assert all(len(t) >= 3 or t.isdigit() for t in p["truth"]), p
    # a night trains its replayed questions to keep their answers: a probe among them would flatter the night
    assert not {p["ask"].lower() for p in KNOWLEDGE} & {q.lower() for q in REPLAY_QUESTIONS}


def test_a_night_has_many_distinct_replay_questions():
    # a night replays replay_ratio x its fact examples, up to the whole list: at 2.0 a 12-fact night takes
    # about 52 and a 50-fact one about 220, so the list must be long enough for a day's night to see new ones
    assert len(REPLAY_QUESTIONS) >= 150 and len(set(REPLAY_QUESTIONS)) == len(REPLAY_QUESTIONS)
    assert all(q.strip() == q and q for q in REPLAY_QUESTIONS)
    assert REPLAY_QUESTIONS[:2] == ["What is the boiling point of water at sea level?", "Who painted the Mona Lisa?"]


def test_a_right_answer_turned_wrong_is_lost_and_a_reworded_one_kept():
    probes = [{"ask": "What is the capital of Italy?", "raw": False, "truth": ["Rome"]},
              {"ask": "Who wrote Hamlet?", "raw": False, "truth": ["Shakespeare"]},
              {"ask": "The Taj Mahal is in", "raw": True, "truth": ["India"]},
              {"ask": "Who painted the Mona Lisa?", "raw": False, "truth": ["Leonardo", "da Vinci"]}]
    before = ["The capital of Italy is Rome.", "Hamlet was written by Shakespeare.", "Pakistan.", "Leonardo."]
    after = ["Rome is Italy's capital.", "Christopher Marlowe.", "India.", "It was painted by da Vinci."]
    k = knowledge_kept(before, after, probes)
    # the Taj Mahal was wrong before: a right answer after it neither counts nor is lost
    assert k["right_before"] == 3 and k["right_kept"] == pytest.approx(2 / 3)
    assert k["right_lost"] == [{"ask": "Who wrote Hamlet?", "before": before[1], "after": after[1]}]
    with pytest.raises(ValueError, match="same probes"):
        knowledge_kept(before, after[:-1], probes)
