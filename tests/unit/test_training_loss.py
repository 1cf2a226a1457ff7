"""Sleep's training loss on a tiny random Llama: running the chat rows' shared system turn once per batch, and plain
text apart from them, gives the loss and the gradients of one padded forward over every row."""

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from agentmem.serving.generate import pad_rows
from agentmem.sleep.train import _loss, base_logprobs, common_prefix

PAD = 0
SYSTEM = [1, 5, 9, 7, 3, 8]  # the chat template's system turn, the same in every chat row


def _model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=PAD, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def _chat(question: list[int], answer: list[int]) -> tuple[torch.Tensor, int]:
    prompt = SYSTEM + question
    return torch.tensor(prompt + answer), len(prompt)


# two facts, two replayed answers (anchors) and plain text (an anchor with no prompt), of different lengths
ROWS = [_chat([11, 12], [20, 21, 22]), _chat([13, 14, 15, 16], [23, 24]), _chat([17], [25, 26, 27, 28]),
        (torch.tensor([30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]), 0), _chat([18, 19], [29, 30])]
ANCHOR = [False, False, True, True, True]


def _plain(peft, rows, anchor, teacher, kl_weight):
    """The loss as one padded forward with full logits computes it."""
    ids, mask, labels = pad_rows(rows, PAD)
    logits = peft(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target, held = labels[:, 1:], torch.tensor(anchor)[:, None]
    learn, hold = (target != -100) & ~held, (mask[:, 1:] > 0) & held
    total = F.cross_entropy(logits[learn], target[learn]) if learn.any() else logits.new_zeros(())
    if kl_weight:
        total = total + kl_weight * F.kl_div(F.log_softmax(logits[hold], -1), torch.cat(teacher).float(),
                                             log_target=True, reduction="batchmean")
    return total


def _trained_peft():
    model = _model()
    teacher = base_logprobs(model, [r for r, a in zip(ROWS, ANCHOR) if a], PAD)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "gate_proj", "up_proj"]))
    with torch.no_grad():  # B is zero at initialisation, which would hide a wrong teacher or a wrong prefix
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return peft, teacher


def _grads(peft, loss):
    params = [p for p in peft.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


def test_the_shared_prefix_is_the_system_turn_and_stops_short_of_every_answer():
    assert common_prefix(ROWS) == len(SYSTEM)
    assert common_prefix([ROWS[3]]) == 0  # no chat row: nothing shared
    # one chat row alone shares everything but the token before its answer
    assert common_prefix([ROWS[0]]) == ROWS[0][1] - 1
    assert common_prefix([_chat([], [20]), ROWS[1]]) == len(SYSTEM) - 1


@pytest.mark.parametrize("kl_weight", [1.0, 0.0])
def test_the_loss_and_its_gradients_are_those_of_one_padded_forward(kl_weight):
    peft, teacher = _trained_peft()
    teacher = teacher if kl_weight else []
    want = _plain(peft, ROWS, ANCHOR, teacher, kl_weight)
    got = _loss(peft, ROWS, ANCHOR, teacher, kl_weight, common_prefix(ROWS), PAD)
    assert want.item() > 0.1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(_grads(peft, got), _grads(peft, _plain(peft, ROWS, ANCHOR, teacher, kl_weight))):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_a_batch_of_only_chat_or_only_text_rows_and_no_shared_prefix_give_the_same_loss():
    peft, teacher = _trained_peft()
    for rows, anchor, ref in [(ROWS[:3], ANCHOR[:3], teacher[:1]), (ROWS[3:4], ANCHOR[3:4], teacher[1:2]),
                              (ROWS[2:], ANCHOR[2:], teacher)]:
        want = _plain(peft, rows, anchor, ref, 1.0)
        torch.testing.assert_close(_loss(peft, rows, anchor, ref, 1.0, common_prefix(ROWS), PAD), want,
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(_loss(peft, rows, anchor, ref, 1.0, 0, PAD), want, rtol=1e-5, atol=1e-6)
