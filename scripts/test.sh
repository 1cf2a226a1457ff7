#!/usr/bin/env bash
# Run the test suite on the real bundled model (converted model and covariance are cached in ~/.cache/agentmem-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -q -p no:cacheprovider --durations=30 "$@"
