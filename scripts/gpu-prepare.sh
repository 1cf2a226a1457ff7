#!/usr/bin/env bash
# Here (with the package index), before a GPU check: fill .gpu/ (git-ignored) with what scripts/gpu-check.sh needs
# on the device machine, which reaches no index and has torch, transformers and pytest but not our services' stack:
# Python 3.12 wheels of the rest, pinned to this venv's versions, and the tiny test checkpoint (the bundled model,
# 98 MB, is over the 64 MiB a device call carries). Then: device run, carry [".gpu"], command "bash scripts/gpu-check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1

# what `from agentmem import Memory` and the tests' conftest import beyond the device image's packages
pinned=$(python - <<'EOF'
import importlib.metadata as md
names = ["pydantic", "pydantic-settings", "sqlalchemy", "alembic", "celery", "redis", "fastapi", "uvicorn", "filelock"]
print(" ".join(f"{n}=={md.version(n)}" for n in names))
EOF
)
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .gpu/wheels
# shellcheck disable=SC2086  # one argument per pinned requirement
pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 "${platforms[@]}" \
    -d .gpu/wheels $pinned
# peft without its dependencies: they are the image's own torch and transformers
pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/wheels "peft==$(python -c \
    'import importlib.metadata as md; print(md.version("peft"))')"

# tests/test_device.py builds its random checkpoint into the test cache from the bundled tokenizer: build it here
cache=${AGENTMEM_TEST_CACHE:-$HOME/.cache/agentmem-tests}
if [ ! -f "$cache/models/tiny-llama-v1/config.json" ]; then
    bash scripts/test.sh tests/test_device.py -k local_checkpoint
fi
rm -rf .gpu/cache && mkdir -p .gpu/cache/models
cp -r "$cache/models/tiny-llama-v1" .gpu/cache/models/
du -sh .gpu
