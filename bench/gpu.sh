#!/usr/bin/env bash
# GPU checks, under 8 minutes on one GPU. Run from the repository root.
# 1. training throughput (bench/gpu.py); 2. with PHOTOS=<folder of colour photos>, CUDA against CPU on
# the same photos (bench/gpu_parity.py); 3. with PHOTOS, a short `colorizer train` on CUDA, resumed, and
# the same under torchrun (NCCL).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 240 "$PYTHON" bench/gpu.py
[ -n "${PHOTOS:-}" ] || exit 0
timeout 120 "$PYTHON" bench/gpu_parity.py "$PHOTOS"
run=$(mktemp -d)
flags=(--data "$PHOTOS" --preset effnet-lite0 --options '{"frozen_stages": 2}' --image-size 128 --lr 1e-3
       --min-crop-area 0.35 --device cuda --batch-size 64 --workers 12)
timeout 150 "$PYTHON" -m colorizer train "${flags[@]}" --epochs 3 --out "$run/single" 2>&1 | grep '^{\|^model'
timeout 60 "$PYTHON" -m colorizer train "${flags[@]}" --epochs 4 --resume --out "$run/single" 2>&1 | grep '^{\|^resum'
timeout 90 "$PYTHON" -m torch.distributed.run --nproc_per_node 1 -m colorizer train "${flags[@]}" --epochs 1 \
    --out "$run/ddp" 2>&1 | grep '^{\|^model'
