#!/usr/bin/env bash
# On a lent GPU machine (the device tool), after scripts/gpu-prepare.sh here: tests/test_device.py, which checks
# that a CUDA device computes the CPU's edits, answers, forgets and sleeps (random 8-layer checkpoint).
# Everything it prints is also kept in $OUT/gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1

[ -d .gpu/wheels ] || { echo "gpu-check: .gpu/wheels is missing: run scripts/gpu-prepare.sh and carry .gpu"; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 AGENTMEM_TEST_CACHE="$PWD/.gpu/cache" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'transformers', transformers.__version__, 'peft', peft.__version__)"
python3 -c "from agentmem import Memory" || { echo "gpu-check: agentmem does not import (a wheel is missing?)"; exit 2; }
python3 -m pytest -q -s -p no:cacheprovider --durations=10 tests/test_device.py
