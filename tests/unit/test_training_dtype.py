"""The precision a night trains in: what SleepConfig names, and for "auto" bfloat16 exactly where the CPU multiplies
it natively (AVX-512 bf16 or AMX), as /proc/cpuinfo says."""

import pytest
import torch
from pydantic import ValidationError

from agentmem.bench.machine import machine
from agentmem.sleep.config import SleepConfig
from agentmem.sleep.train import training_dtype

CPU = torch.device("cpu")


def test_a_named_dtype_is_used_as_named():
    assert training_dtype("float32", CPU) is torch.float32
    assert training_dtype("bfloat16", CPU) is torch.bfloat16


def test_auto_is_bfloat16_only_on_a_cpu_with_bfloat16_products():
    flags = set(machine()["cpu_flags"])  # what the benchmarks record, read from /proc/cpuinfo
    assert flags, "no matrix flags read from /proc/cpuinfo: every machine we run on has at least avx2"
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert training_dtype("auto", CPU) is (torch.bfloat16 if native else torch.float32)


def test_an_unknown_dtype_is_refused_by_name():
    with pytest.raises(ValidationError, match="train_dtype"):
        SleepConfig(train_dtype="float16")
