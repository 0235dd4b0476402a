#!/usr/bin/env bash
# GPU training throughput (see bench/gpu.py); under 8 minutes on one GPU. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$PYTHON" bench/gpu.py
