#!/usr/bin/env bash
# Every GPU check of the project in one run, for a borrowed GPU machine with a time limit.
#
#   OUT=gpu-out PIPELINE_SECONDS=300 DESCRIPTOR_SECONDS=60 bash bench/gpu_checks.sh
#   DRY_RUN=1 bash bench/gpu_checks.sh        # on any machine: plan the pipeline step, run nothing
#
# First, today's pipeline: `snakemake final_models` on config/gpu.yaml in this checkout (from
# nothing on a fresh machine), with its wall time, every model's gain over its input (upper bounds,
# mix-all and groups) and the partition. Then the component checks, the most important first.
# Needs the package importable (PYTHONPATH=. is set here); the pipeline leaves what the component
# checks read (results/clean, results/degraded).
# Writes to $OUT: log.txt (every table), pipeline/ (its final/ and upper_bounds/ tables), and the
# descriptor trained at BasicSR's batch/crop (msrresnet_x4.{pth,md,log.parquet}), plus
# ggd_cuda_cpu.parquet. Each step has its own time limit, so one slow step cannot starve the rest.
set -u
OUT=${OUT:-gpu-out}
PIPELINE_SECONDS=${PIPELINE_SECONDS:-300}
DESCRIPTOR_SECONDS=${DESCRIPTOR_SECONDS:-60}
PYTHON=${PYTHON:-python3}
SNAKEMAKE=${SNAKEMAKE:-$PYTHON -m snakemake}
mkdir -p "$OUT"
pipeline() {  # final_models of config/gpu.yaml in this checkout's results/; DRY_RUN=1: plan it only
  local args=(--configfile config/config.yaml config/gpu.yaml --cores all final_models)
  if [ "${DRY_RUN:-0}" = 1 ]; then
    $SNAKEMAKE "${args[@]}" -n --quiet rules
    return
  fi
  local start=$SECONDS
  timeout "$PIPELINE_SECONDS" $SNAKEMAKE "${args[@]}" --quiet progress 2>&1 | tail -5
  echo "pipeline wall time: $((SECONDS - start)) s (limit $PIPELINE_SECONDS s)"
  $PYTHON bench/gains_table.py results || true
  mkdir -p "$OUT/pipeline" && cp -r results/final results/upper_bounds "$OUT/pipeline/" 2>/dev/null || true
}
if [ "${DRY_RUN:-0}" = 1 ]; then
  pipeline
  exit $?
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG=$OUT/log.txt
step() { echo; echo "=== $1 ($(date -u +%T))"; }
run() { local limit=$1; shift; timeout "$limit" "$@" 2>&1 | grep -v -E '\|[^|]*\| *[0-9]+/[0-9]+ \[' || true; }
{
step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PYTHON -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'

step "pipeline: snakemake final_models on config/gpu.yaml, from nothing"
pipeline

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
