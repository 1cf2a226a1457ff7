#!/usr/bin/env bash
# Run the test suite on the real bundled model (converted model and covariance are cached in ~/.cache/agentmem-tests),
# in AGENTMEM_TEST_WORKERS processes (0, the default: in this one), a test file at a time each, the cores divided.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -q -p no:cacheprovider -n "${AGENTMEM_TEST_WORKERS:-0}" --dist loadfile --durations=30 "$@"
