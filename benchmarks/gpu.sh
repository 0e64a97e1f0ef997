#!/usr/bin/env bash
# Benchmarks for a GPU machine, in one go (well under 10 minutes on one H100/H200-class node):
#   bash benchmarks/gpu.sh [RESULTS_DIR]      (default results/gpu)
# Each section prints a markdown table naming the GPU and writes JSON to RESULTS_DIR.
# Needs: .venv (make setup) with a CUDA build of torch; no dataset for the H1 section.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $NGPU"

# --- H1: distributed training throughput (issue 12) ---------------------------------------
# ResNet-50, ImageNet-shaped synthetic data in GPU memory (3x224x224, 1000 classes, 8,192
# images), global batch 256 (the paper's), bf16 autocast + channels-last, 2 epochs (the second
# is measured): images/s and time per epoch on 1 GPU and on all of them (DDP over NCCL,
# torchrun), plus the implied time of one ImageNet epoch (1,281,167 images). Data loading is
# not part of this figure (in memory): it measures the training step and the all-reduce.
NPROC=(--nproc 1)
if [ "$NGPU" -gt 1 ]; then NPROC+=(--nproc "$NGPU"); fi
timeout 480 $PY benchmarks/bench_distributed.py --model resnet50 --device cuda \
    --synthetic 3,224,224,1000,8192 --global-batch 256 "${NPROC[@]}" \
    --set amp=true --set channels_last=true --json "$OUT/distributed-resnet50.json"

# --- I: speedrun section (issue 16; helper I adds its commands here) ------------------------
