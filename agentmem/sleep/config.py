"""SleepConfig: how a night trains and when it counts as a success (torch-free)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SleepConfig(BaseModel):
    """How a night trains and when it counts as a success."""

    rank: int = Field(8, ge=1, le=256)
    alpha: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    epochs: int = Field(5, ge=1)
    # 4, not 8: twice the optimiser's steps for the same arithmetic; over three 12-fact nights more right answers
    # kept on the knowledge probes (development half 0.885 against 0.854) and the adapter alone answers every
    # fact, in the same training time (docs/results/notes.md)
    batch_size: int = Field(4, ge=1)
    # the frozen weights' precision while training (the adapter and its loss stay float32); "auto" takes
    # bfloat16 where the device multiplies it natively (AVX-512 bf16 or AMX on CPUs, and GPUs): 1.5x faster
    # on an AMD EPYC, but small nights lost a fact where float32 did not (docs/results/notes.md)
    train_dtype: str = Field("float32", pattern="^(auto|float32|bfloat16)$")
    # 2.0, not 0.5: over five 12-fact nights more right answers kept on the development knowledge probes
    # (0.842 against 0.814) for about 50 % more night time (docs/results/notes.md)
    replay_ratio: float = Field(2.0, ge=0, description="replayed answers per fact example")
    text_replay: int = Field(32, ge=0, description="passages of the model's own text replayed as plain text")
    kl_weight: float = Field(1.0, ge=0, description="weight of the KL to the base model on replayed text")
    # not down_proj: MEMIT's tensors stay plain weights that a server reloads in place
    target_modules: list[str] = ["q_proj", "v_proj", "gate_proj", "up_proj"]
    # LoRA only from this fraction of depth up: backward passes stop there, and the
    # lower layers, where MEMIT keys are read, stay as they are
    lowest_layer: float = Field(0.0, ge=0, lt=1)
    # MEMIT scale by stage: a fact whose recall holds with its edit at 0 moves one stage on
    schedule: list[float] = [1.0, 0.5, 0.1, 0.0]
    # the gate: a night is rolled back if recall of the facts it audits falls by more, or perplexity rises by more
    max_recall_drop: float = Field(0.0, ge=0, le=1)
    max_perplexity_rise: float = Field(0.05, ge=0)
    # ... or if the share of the knowledge probes answered right (of those the model without this memory answers
    # right) falls by more. Off (1.0) by default: at 0.05 the suite's 12-fact night is rolled back (0.95 -> 0.83),
    # and nights must keep knowledge better before the gate may hold them to it (docs/results/notes.md)
    max_knowledge_drop: float = Field(1.0, ge=0, le=1)
    # 96: one batch of chat questions and one of raw prompts (5.5 s on 2 AMX cores; the half holds 252), asked
    # three times a night (base, before, after) and only while the gate is on: a figure nothing judges is not
    # worth a minute of a 2-core night
    knowledge_probes: int = Field(96, ge=0, description="probes of the development half the gate asks while "
                                                        "max_knowledge_drop is below 1 (0: none)")
    # an edit computed before the night can stop working beside the night's adapter; one such fact would roll
    # the whole night back (docs/results/notes.md)
    repair: int = Field(10, ge=0, description="audited facts not recalled after the night that are edited again "
                                              "through its adapter before the gate judges (0: none)")
    # A night's cost follows the day's new facts, not every fact ever learned: facts the adapter it starts from
    # already holds are drawn at random, anew each night, for the two parts that would otherwise grow.
    refresh_sample: int = Field(16, ge=0, description="held facts retrained with one question each per night, "
                                                      "those of a relation a new fact has first")
    refresh_epochs: int = Field(5, ge=1, description="the last epochs a refreshed held fact is trained in")
    audit_sample: int = Field(32, ge=0, description="held facts whose recall the gate checks beside every new one")
    seed: int = 0
