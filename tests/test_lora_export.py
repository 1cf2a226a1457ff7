"""Wake edits exported as a LoRA adapter on the bundled model: served from a home that holds no edit at all,
the adapter alone answers as the edited weights do (the building block of per-user adapters)."""

import torch

from agentmem.bench.data import fictional_facts
from agentmem.edit.lora import compacted, stacked
from agentmem.serving import generate
from agentmem.storage.lora_adapter import write_user_lora


def test_edits_served_as_an_adapter_answer_as_the_edited_weights_do(open_memory, tmp_path):
    facts = fictional_facts(3, seed=11)
    questions = [f.questions()[0] for f in facts]
    edited = open_memory("edited")
    ids = edited.remember(facts)
    expected = generate.chat_many(edited.model, edited.tokenizer, questions, 24)
    assert all(f.object.lower() in a.lower() for f, a in zip(facts, expected)), expected
    store = edited.editor.store
    lora = stacked([(store.load_edit(fid), 1.0) for fid in ids])
    rank = write_user_lora(tmp_path / "adapter", lora, edited.editor.arch, edited.model_dir)

    fresh = open_memory("fresh")  # the base model, nothing edited
    assert not any(f.object.lower() in fresh.ask(q).lower() for f, q in zip(facts, questions))
    fresh.publish_adapter(tmp_path / "adapter")
    assert [fresh.ask(q, max_new_tokens=24) for q in questions] == expected
    ids_text = edited.tokenizer(facts[0].completion_prompt, return_tensors="pt")["input_ids"]
    with fresh.reading() as net, torch.no_grad():
        gap = (net(input_ids=ids_text).logits - edited.model(input_ids=ids_text).logits).abs().max().item()
    assert gap < 1e-3, (gap, rank)

    # squeezed under its true rank, the adapter says how much of the edits it left out
    squeezed = {l: compacted(lo, max_rank=2) for l, lo in lora.items()}
    assert all(lo.rank == 2 and lo.lost > 0 for lo in squeezed.values())
