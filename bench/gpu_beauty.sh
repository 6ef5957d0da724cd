#!/usr/bin/env bash
# The Beauty generator at TIGER's published shape (d_model 128, 4+4 layers, 6 heads) on one GPU: every training
# example, every test user, next to the count recommenders with 95% intervals (issue 17's device target:
# recall@10 >= 0.065, ndcg@10 >= 0.042). Needs the MiniLM IDs made on a CPU machine and the two Beauty files.
#
#   here:    bash bench/gpu_beauty.sh stage      # copies the two Beauty files to data/shared (about 5 MB)
#   device:  bash bench/gpu_beauty.sh [OUT_DIR]  # carry: data/shared, runs/bench-beauty-ids-minilm/ids,
#                                                #        runs/bench-beauty-rec/backbone
# Settings after the output folder go to bench/full_generators.py (e.g. generator.epochs=60).
set -euo pipefail
cd "$(dirname "$0")/.."
beauty=amazon_beauty
files=("$beauty/derived/items.jsonl" "$beauty/original/CIKM2020-S3Rec/data/Beauty.txt")
if [ "${1:-}" = stage ]; then
  for f in "${files[@]}"; do mkdir -p "data/shared/$(dirname "$f")" && cp "../shared/data/$f" "data/shared/$f"; done
  exit 0
fi
out=${1:-${OUT:-runs/gpu-beauty}}
shift || true
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export LMINDEXER_SHARED_DATA=${LMINDEXER_SHARED_DATA:-$PWD/data/shared}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)
python3 -m bench.full_generators beauty:lmindexer-minilm preset=tiger as=tiger-gpu \
  train.use_gpu=true train.num_workers=1 train.precision=bf16 generator.epochs=40 generator.patience=6 \
  generator.dropout=0.1 generator.lr=1e-3 generator.batch_size=256 generator.val_examples=4000 "$@" \
  2>&1 | tee "$out/beauty-generator.log" | grep -E "^\S+ lmindexer|done:|^\||^\{|Error|error" || true
echo "beauty generator on the GPU: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
cp runs/bench-full-generators.json runs/bench-full-generators.png "$out/" 2>/dev/null || true
