"""Sleep's training half: chat question/answer data from facts, and a LoRA adapter trained on it with peft.

Pure of I/O beyond reading and writing adapter folders: the night itself
(graduation, the gate, publishing) is in night.py.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F
from ..edit.requests import answer_for
from ..facts import Fact
from ..serving import generate
from ..serving.generate import pad_rows
from .config import SleepConfig

# General questions whose answers the served model gives are replayed during training (with a KL to its
# whole distribution), so the adapter learns the facts and not a new way of talking nor new answers to what
# the model already knew. None of them is a probe or held-out text used to measure specificity, knowledge kept
# or perplexity (measure.py); a night takes the first replay_ratio x its examples.
REPLAY_QUESTIONS = (files("agentmem") / "data" / "replay.txt").read_text().splitlines()


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    kind: str  # "fact", "refresh" (a held fact's), "replay", "unlearn", or "text" (plain language modelling)


def fact_examples(fact: Fact) -> list[Example]:
    """The fact's editing question and all but the first of its paraphrases (that one is kept for measuring)."""
    answer = answer_for(fact)
    questions = fact.questions() + fact.paraphrases()[1:]
    return [Example(q, answer, "fact") for q in dict.fromkeys(questions)]


def refresh_example(fact: Fact) -> Example:
    """One question of a fact the adapter already holds, to keep it while the night teaches others."""
    return Example(fact.questions()[0], answer_for(fact), "refresh")


def night_examples(model, tok, cfg: SleepConfig, fresh: list[Fact], refresh: list[Fact],
                   unlearn_q: list[str], state=None) -> tuple[list[Example], dict]:
    """A night's training data and its counts by kind: every phrasing of the fresh facts, one question of each
    refreshed one, `model`'s own answers replayed (a ratio of the fact examples, so bounded by them) and to the
    questions unlearned, and text it writes itself. `state` names what `model` holds (see `Said`)."""
    examples = [ex for fact in fresh for ex in fact_examples(fact)]
    new = len(examples)
    examples += [refresh_example(fact) for fact in refresh]
    said = Said.of(state)
    replay = said.replay(model, tok, max(1, round(cfg.replay_ratio * len(examples))))
    examples += [Example(q, a, "replay") for q, a in replay]
    examples += [Example(q, a, "unlearn") for q, a in zip(unlearn_q, generate.chat_many(model, tok, unlearn_q, 40))]
    texts = said.texts(model, tok, cfg.text_replay, cfg.seed)
    examples += [Example("", t, "text") for t in texts]
    return examples, {"new": new, "refresh": len(refresh), "replay": len(replay), "unlearn": len(unlearn_q),
                      "text": len(texts)}


class Said:
    """What one model state says to the replay questions and writes as its own text, kept per process for the
    state `night_examples` names (None: kept for nothing): a worker's nights on one state (the shared nights
    on the base model, every user's night on one shared version) ask the model each question once instead of
    spending up to a minute on them every night. A greedy answer does not depend on the batch it was asked in
    (the same alone and among 64 on an AMD EPYC, docs/results/notes.md), so a night gets what it would alone."""

    KEPT = 4  # states: the newest few, a worker moves on from the others
    _by_state: dict = {}

    def __init__(self):
        self._answers: dict[str, str] = {}
        self._texts: dict[tuple[int, int], list[str]] = {}

    @classmethod
    def of(cls, state) -> "Said":
        if state is None:
            return cls()
        said = cls._by_state.pop(state, None) or cls()
        cls._by_state[state] = said  # newest last
        for old in list(cls._by_state)[:-cls.KEPT]:
            del cls._by_state[old]
        return said

    def replay(self, model, tok, n: int) -> list[tuple[str, str]]:
        """The first `n` replay questions with `model`'s answers."""
        questions = REPLAY_QUESTIONS[:n]
        missing = [q for q in questions if q not in self._answers]
        self._answers.update(zip(missing, generate.chat_many(model, tok, missing, 40)))
        return [(q, self._answers[q]) for q in questions]

    def texts(self, model, tok, n: int, seed: int) -> list[str]:
        if (n, seed) not in self._texts:
            self._texts[n, seed] = sample_texts(model, tok, n, seed=seed)
        return self._texts[n, seed]


@torch.no_grad()
def sample_texts(model, tok, n: int, tokens: int = 64, seed: int = 0) -> list[str]:
    """Ordinary text the model writes itself, replayed as plain language modelling to hold perplexity."""
    if n == 0:
        return []
    torch.manual_seed(seed)
    start = torch.full((n, 1), tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
                       device=model.device)
    out = model.generate(input_ids=start, attention_mask=torch.ones_like(start), do_sample=True, top_k=0,
                         top_p=1.0, temperature=1.0, max_new_tokens=tokens, pad_token_id=tok.pad_token_id)
    return [t for t in tok.batch_decode(out[:, 1:], skip_special_tokens=True) if t.strip()]


def _encode(tok, ex: Example) -> tuple[torch.Tensor, int]:
    if ex.kind == "text":
        return tok(ex.answer, add_special_tokens=False, return_tensors="pt")["input_ids"][0], 0
    prompt = generate.chat_ids(tok, [{"role": "user", "content": ex.question}])[0]
    answer = tok(ex.answer + tok.eos_token, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return torch.cat([prompt, answer]), len(prompt)


# Examples that hold behaviour rather than teach: matched to the base model's whole distribution (KL),
# which constrains far more than its single sampled tokens would.
ANCHORS = ("replay", "unlearn", "text")


@torch.no_grad()
def base_logprobs(model, rows: list[tuple[torch.Tensor, int]], pad: int, batch: int = 8) -> list[torch.Tensor]:
    """The base model's (no adapter) next-token log-probabilities at every position of each row but its last.

    Computed once per night rather than at every step of every epoch (where they cost about a quarter
    of a step); float16 keeps them at about 100 KB per token on SmolLM2's vocabulary.
    """
    out = []
    for b in range(0, len(rows), batch):
        chosen = rows[b: b + batch]
        ids, mask, _ = pad_rows(chosen, pad, model.device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        out += [F.log_softmax(logits[i, : len(row) - 1].float(), -1).half() for i, (row, _) in enumerate(chosen)]
    return out


def training_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype named in SleepConfig.train_dtype; "auto" is bfloat16 where `device` has bfloat16 products."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return torch.bfloat16 if native else torch.float32


def _loss(peft, ids, mask, labels, anchor: torch.Tensor, teacher: list[torch.Tensor], kl_weight: float) -> torch.Tensor:
    """Cross-entropy on the taught answers plus KL to `teacher` (one per anchor row, in order) on the anchors.

    The LM head runs only where a loss is taken: a fact's chat prompt (most of its tokens) needs no logits.
    """
    base = peft.get_base_model()
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    head = base.get_output_embeddings()
    target = labels[:, 1:]
    learn = (target != -100) & ~anchor[:, None]
    total = hidden.new_zeros(())
    if learn.any():
        total = total + F.cross_entropy(head(hidden[learn]).float(), target[learn])
    hold = (mask[:, 1:] > 0) & anchor[:, None]
    if kl_weight > 0 and hold.any():
        ref = torch.cat(teacher).float()
        total = total + kl_weight * F.kl_div(F.log_softmax(head(hidden[hold]).float(), -1), ref, log_target=True,
                                             reduction="batchmean")
    return total


def train_adapter(model, tok, examples: list[Example], cfg: SleepConfig, dest: Path,
                  start_from: Path | None = None, progress=None, check=None) -> dict:
    """Train a LoRA adapter on `examples` (from `start_from`'s weights when given) and save it to `dest`.

    `model` is modified (cast to the training dtype, peft injects its layers): pass a copy nobody serves
    from. `check()`, if given, runs before every step and stops the training by raising. Returns its size
    (examples, steps) and the mean loss of its first and last three steps.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    say = progress or (lambda m: None)
    torch.manual_seed(cfg.seed)
    rows = [_encode(tok, ex) for ex in examples]
    is_anchor = [ex.kind in ANCHORS for ex in examples]
    anchored = [i for i, a in enumerate(is_anchor) if a]
    teacher = dict(zip(anchored, base_logprobs(model, [rows[i] for i in anchored], tok.pad_token_id)
                       if cfg.kl_weight > 0 else []))
    # the teacher above is the model as served; the steps below run about 1.5x faster in bfloat16 on a CPU
    # with bfloat16 products, with eager attention (SDPA's backward is slow in bfloat16 there)
    dtype = training_dtype(cfg.train_dtype, model.device)
    if dtype != model.dtype:
        model.to(dtype)
        model.set_attn_implementation("eager")
    if start_from is not None:
        peft = PeftModel.from_pretrained(model, str(start_from), is_trainable=True)
    else:
        layers = int(model.config.num_hidden_layers)
        peft = get_peft_model(model, LoraConfig(
            r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(cfg.target_modules),
            layers_to_transform=list(range(int(cfg.lowest_layer * layers), layers))))
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    orders = _epochs(examples, cfg)
    total = sum((len(o) + cfg.batch_size - 1) // cfg.batch_size for o in orders)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.1, 1 - s / max(total, 1)))
    peft.train()
    losses, step = [], 0
    for order in orders:
        rng.shuffle(order)
        for b in range(0, len(order), cfg.batch_size):
            if check is not None:
                check()
            chosen = order[b: b + cfg.batch_size]
            ids, mask, labels = pad_rows([rows[i] for i in chosen], tok.pad_token_id, model.device)
            anchor = torch.tensor([is_anchor[i] for i in chosen], device=model.device)
            loss = _loss(peft, ids, mask, labels, anchor, [teacher[i] for i in chosen if i in teacher],
                         cfg.kl_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
            step += 1
            if step % 10 == 0 or step == total:
                say(f"sleep: training step {step}/{total}, loss {losses[-1]:.3f}")
    peft.eval()
    peft.save_pretrained(str(dest))
    return {"examples": len(rows), "steps": step, "loss_first": _mean(losses[:3]), "loss_last": _mean(losses[-3:])}


def _epochs(examples: list[Example], cfg: SleepConfig) -> list[list[int]]:
    """Each epoch's examples (indices): every one, but a held fact's refresh only in the last
    `cfg.refresh_epochs`, so that keeping a fact costs a fraction of learning it."""
    first_refresh = cfg.epochs - min(cfg.refresh_epochs, cfg.epochs)
    return [[i for i, ex in enumerate(examples) if ex.kind != "refresh" or e >= first_refresh]
            for e in range(cfg.epochs)]


def _mean(xs: list[float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else math.nan
