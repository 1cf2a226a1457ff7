"""The precision a night trains in: what SleepConfig names, and for "auto" bfloat16 exactly where the CPU multiplies
it natively (AVX-512 bf16 or AMX), as /proc/cpuinfo says."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from agentmem.sleep.config import SleepConfig
from agentmem.sleep.train import training_dtype

CPU = torch.device("cpu")


def test_a_named_dtype_is_used_as_named():
    assert training_dtype("float32", CPU) is torch.float32
    assert training_dtype("bfloat16", CPU) is torch.bfloat16


def test_auto_is_bfloat16_only_on_a_cpu_with_bfloat16_products():
    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(next(l for l in info.read_text().splitlines() if l.startswith("flags")).split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert training_dtype("auto", CPU) is (torch.bfloat16 if native else torch.float32)


def test_an_unknown_dtype_is_refused_by_name():
    with pytest.raises(ValidationError, match="train_dtype"):
        SleepConfig(train_dtype="float16")
