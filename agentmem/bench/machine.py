"""The machine a benchmark's numbers were measured on, recorded beside them in every benchmark's JSON."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

# the instruction sets that decide how fast torch multiplies on a CPU (AMX and avx512_bf16: bfloat16 products)
MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> dict:
    """The hardware and thread settings a number was measured with (timings depend on all of them)."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in MATRIX_FLAGS if f in have]
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "cores_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": revision(),
    }


def revision() -> str | None:
    """The commit the code ran at ("-dirty" when the checkout had uncommitted changes)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
