"""The generated snippets an extraction adapter is trained on: facts a reader would store, as the grammar writes them."""

import json

import pytest

from agentmem.bench.extraction import score_dataset
from agentmem.bench.extraction_corpus import TEMPLATES, corpus
from agentmem.extract import RuleExtractor
from agentmem.extract.llm import SCHEMA
from agentmem.facts import RELATIONS, Fact

SNIPPETS = corpus(800, seed=3)


def test_the_same_seed_gives_the_same_snippets_and_another_seed_others():
    assert corpus(50, seed=3) == SNIPPETS[:50]
    assert [s.text for s in corpus(50, seed=4)] != [s.text for s in SNIPPETS[:50]]


def test_every_category_is_drawn_and_the_no_fact_ones_expect_nothing():
    assert {s.category for s in SNIPPETS} == set(TEMPLATES)
    assert all(not s.expected for s in SNIPPETS if s.category == "nothing")
    assert sum(bool(s.expected) for s in SNIPPETS) > len(SNIPPETS) / 2


def test_every_expected_fact_is_valid_and_its_object_is_said_in_the_message():
    for s in SNIPPETS:
        for subject, relation, obj in s.expected:
            assert relation in RELATIONS
            Fact.parse({"subject": subject, "relation": relation, "object": obj, "user_id": s.user_id})
            assert subject.startswith(f"User {s.user_id}") or subject in s.text, s
            # a plan is said with its verb in another form ("I'm visiting Oslo": "visit Oslo")
            assert obj.split()[-1].lower() in s.text.lower(), s


def test_the_rules_read_the_generated_snippets_as_they_are_annotated():
    # the templates follow the conventions the rules were written to: disagreement means one of them drifted
    rows = [{"id": i, "user_id": s.user_id, "messages": [{"role": "user", "content": s.text}],
             "expected": [dict(zip(("subject", "relation", "object"), t)) for t in s.expected]}
            for i, s in enumerate(SNIPPETS)]
    scored = score_dataset(rows, RuleExtractor())
    assert scored.precision >= 0.97 and scored.recall >= 0.95, scored.errors[:5]


def test_the_training_answer_is_what_the_schema_constrained_decoder_can_write():
    torch = pytest.importorskip("torch")  # noqa: F841 (the module imports sleep's trainer)
    xgr = pytest.importorskip("xgrammar")
    from xgrammar.testing import _is_grammar_accept_string

    from agentmem.bench.extraction_lora import answer, parse

    grammar = xgr.Grammar.from_json_schema(json.dumps(SCHEMA), any_whitespace=False)
    for s in SNIPPETS[:40]:
        text = answer(s.expected)
        assert _is_grammar_accept_string(grammar, text), text
        assert [(f.subject, f.relation, f.object) for f in parse(text, s.user_id)] == s.expected
    assert parse('{"facts": [{"subject": "User u1", "relation": "lives in", "obj', "u1") == []  # cut off
