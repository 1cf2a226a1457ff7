"""Sleep's training loss on the real bundled model: the once-per-night teacher and the trimmed LM head give the loss
the plain computation (full logits, a second forward of the base model at every step) gives."""

import torch
import torch.nn.functional as F

from agentmem.bench.data import fictional_facts
from agentmem.serving import model_store
from agentmem.serving.generate import pad_rows
from agentmem.sleep.config import SleepConfig
from agentmem.sleep.train import ANCHORS, Example, _encode, _loss, base_logprobs, fact_examples


def test_loss_matches_full_logits_and_a_base_forward_per_step(model_dir):
    from peft import LoraConfig, get_peft_model

    model, tok = model_store.load(model_dir)
    examples = fact_examples(fictional_facts(1, seed=4)[0])[:2] + [
        Example("What is photosynthesis?", "It is how plants turn light into sugar.", "replay"),
        Example("", "The river wound through the valley before it reached the sea.", "text"),
    ]
    rows = [_encode(tok, ex) for ex in examples]
    anchor = torch.tensor([ex.kind in ANCHORS for ex in examples])
    teacher = base_logprobs(model, [r for r, a in zip(rows, anchor) if a], tok.pad_token_id)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=list(SleepConfig().target_modules)))
    torch.manual_seed(0)
    with torch.no_grad():  # a trained adapter: B is zero at initialisation, which would hide a wrong teacher
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    ids, mask, labels = pad_rows(rows, tok.pad_token_id)

    logits = peft(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    learn = (target != -100) & ~anchor[:, None]
    hold = (mask[:, 1:] > 0) & anchor[:, None]
    with torch.no_grad(), peft.disable_adapter():
        base = peft(input_ids=ids, attention_mask=mask).logits[:, :-1][hold]
    want_ce = F.cross_entropy(logits[learn], target[learn])
    want_kl = 0.5 * F.kl_div(F.log_softmax(logits[hold], -1), F.log_softmax(base, -1), log_target=True,
                             reduction="batchmean")

    got = _loss(peft, ids, mask, labels, anchor, teacher, kl_weight=0.5)
    got_kl = _loss(peft, ids, mask, labels.masked_fill(~anchor[:, None], -100), anchor, teacher, kl_weight=0.5)
    assert want_kl.item() > 0.01, want_kl.item()  # the adapter moved the anchors: a wrong teacher would show
    assert torch.allclose(got_kl, want_kl, rtol=1e-2), (got_kl.item(), want_kl.item())
    assert torch.allclose(got, want_ce + want_kl, rtol=1e-3), (got.item(), (want_ce + want_kl).item())
