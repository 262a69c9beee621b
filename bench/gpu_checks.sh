#!/usr/bin/env bash
# Every GPU check of the project in one run, for a borrowed GPU machine with a time limit.
#
#   OUT=gpu-out DESCRIPTOR_SECONDS=120 bash bench/gpu_checks.sh
#
# Needs `snakemake --cores all degraded_datasets` run beforehand (results/clean, results/degraded)
# and the package importable (PYTHONPATH=. is set here). Writes to $OUT: log.txt (every table) and
# the descriptor trained at BasicSR's batch/crop (msrresnet_x4.{pth,md,log.parquet}), plus
# ggd_cuda_cpu.parquet. Each step has its own time limit, so one slow step cannot starve the rest;
# the most important results come first.
set -u
OUT=${OUT:-gpu-out}
DESCRIPTOR_SECONDS=${DESCRIPTOR_SECONDS:-120}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG=$OUT/log.txt
step() { echo; echo "=== $1 ($(date -u +%T))"; }
run() { local limit=$1; shift; timeout "$limit" "$@" 2>&1 | grep -v -E '\|[^|]*\| *[0-9]+/[0-9]+ \[' || true; }
{
step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PYTHON -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'

mkdir -p /tmp/trial
step "descriptor: trial run to size the training"
run 90 $PYTHON -m grids.train_descriptor --photos grids/assets/photos --out /tmp/trial/msrresnet_x4.pth \
    --iterations 300 --batch-size 16 --crop 128 --holdout 3 | tail -1 > /tmp/trial.json
cat /tmp/trial.json
ITERS=$($PYTHON -c "import json; f = json.load(open('/tmp/trial.json')); print(max(1000, int(300 / f['train_seconds'] * $DESCRIPTOR_SECONDS) // 1000 * 1000))" 2>/dev/null || echo 5000)
step "descriptor: $ITERS iterations, batch 16, HR crop 128 (BasicSR's batch and crop)"
run $((DESCRIPTOR_SECONDS + 90)) $PYTHON -m grids.train_descriptor --photos grids/assets/photos --out "$OUT/msrresnet_x4.pth" \
    --iterations "$ITERS" --batch-size 16 --crop 128 --holdout 3 | tail -1

step "similarity bench: ours vs reference, default scale (all sets) and SRGA scale (every set) on CUDA"
run 120 $PYTHON bench/bench_similarity.py --device cuda --big-sets "clean,gaussian_blur,motion_blur,rl,sr,ringing,defocus_blur,jpeg,poisson_noise,gaussian_noise,inpainting,salt_pepper" --reference-scales default

step "similarity stage on CUDA vs CPU"
run 120 $PYTHON bench/bench_cuda_matrix.py --srga --out "$OUT/ggd_cuda_cpu.parquet"

step "training throughput: bare compiled bf16 step vs end-to-end, batch 8 x 256², paper-size backbones"
run 170 $PYTHON bench/bench_train.py --device cuda --batch 8 --crop 256 --archs srresnet,restormer --full --compile --steps 20

step "bf16 vs fp32 training, same seed"
run 90 $PYTHON bench/bench_precision.py --device cuda --iterations 800 --crop 128

step "done"
} 2>&1 | tee "$LOG"
