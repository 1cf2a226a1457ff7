"""MemitConfig: the wake editor's hyper-parameters (torch-free; measurements behind each default are in docs/results/notes.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class MemitConfig(BaseModel):
    """Hyper-parameters of one wake edit."""

    layers: list[int] | None = Field(None, description="edited layers; None: the architecture's default")
    steps: int = 20
    # stop optimising once every target's mean token NLL is below this ...
    z_stop_nll: float = Field(0.2, gt=0)
    # ... and every single target token's: a low mean can hide the one token where greedy decoding turns away
    z_stop_token_nll: float = Field(0.5, gt=0)
    # optimise the target value on the prefixed prompts too (their keys are always averaged in)
    z_prefixed: bool = False
    # the answer an edited chat question is trained to: the statement, the object alone, or auto
    # (the object for facts about users, whose long attribute phrasing fits worst)
    answer: str = Field("auto", pattern="^(auto|statement|object)$")
    # an open question about the subject ("What do you know about {s}?") edited beside the fact's own;
    # off: more paraphrase recall, but more drift and 60 % more time per edit
    open_question: str | None = None
    # precision of the layers above the edit in compute_z's loop; bfloat16 is faster on CPUs with bf16
    # instructions but loses paraphrase recall
    z_dtype: str = Field("float32", pattern="^(float32|bfloat16)$")
    # "adam" (MEMIT's classic, at `lr`) or "normalized" (fixed-length steps, z_step times the hidden norm,
    # grown while the loss falls): faster, but drifts more
    z_optimizer: str = Field("adam", pattern="^(normalized|adam)$")
    z_step: float = Field(0.17, gt=0)
    lr: float = 1.0
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp_factor: float = 1.5
    # lambda: at 1000 a subject key's Mahalanobis norm (1e3-6e3 on SmolLM2) lets an edit land; MEMIT's
    # usual 15000 assumes a d_ff of 16k
    lam: float = 1000.0
    # C is pulled this far toward mean(diag C) * I before the solve (see solve.shrink)
    cov_shrinkage: float = Field(0.1, ge=0, lt=1)
    # the regularised solve realises only part of each layer's share: solve again on what is left until
    # the gap is below `max_gap` of the offset, at most `solve_rounds` times
    solve_rounds: int = Field(3, ge=1)
    max_gap: float = Field(0.15, gt=0, lt=1)
    prefixes: list[str] = Field(default_factory=lambda: ["", "I heard that ", "Fun fact: "])
    constraints: str = Field("nullspace", pattern="^(nullspace|alphaedit|none)$")
    # earlier edits' recorded keys drift as lower layers change, so they are held harder than once
    constraint_weight: float = Field(4.0, gt=0)
    preserve_names: bool = Field(True, description="keep other people's name keys fixed (see preserve.py)")
    # edit people who share a family name as one subject: less drift, less paraphrase recall, 2.5x slower
    share_last_word: bool = False
    # AlphaEdit's null space: the eigenvectors of C with the smallest eigenvalues, as a fraction of d_ff
    alphaedit_null_fraction: float = Field(0.5, gt=0, le=1)

    @field_validator("open_question")
    @classmethod
    def _names_the_subject(cls, q: str | None) -> str | None:
        if q is None:
            return q
        try:
            q.format(s="")
            ok = "{s}" in q and q.rstrip().endswith("?")
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"open_question must be a question with '{{s}}' for the subject "
                             f"and no other braces, e.g. 'What do you know about {{s}}?'; got {q!r}")
        return q
