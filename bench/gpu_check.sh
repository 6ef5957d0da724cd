#!/usr/bin/env bash
# The GPU paths on a one-GPU machine, in one short run: the whole pipeline (learn-ids with DeepSpeed ZeRO-2 in bf16
# on a CUDA Ray Train worker, assign-ids on a GPU actor pool, a generator trained and evaluated on the GPU), then
# training throughput of a t5-base-shaped generator: Ray Train (ZeRO-2, ZeRO-3 and DDP, bf16) against a plain bf16
# loop, with MFU; then bench/gpu_throughput.py: assign-ids of a t5-base-sized indexer at 128 tokens (documents/s and
# the fraction of the bf16 peak) and learn-ids examples/s and MFU under ZeRO-2 and ZeRO-3.
#
#   bash bench/gpu_check.sh [OUT_DIR]
#   PARTS="throughput" bash bench/gpu_check.sh        # some of: pipeline train throughput (default: all three)
#
# Copy gpu-train.json and gpu-throughput.json from OUT_DIR into bench/results/ and run bench/results.py.
# On a machine without network, wheels in .whl/ (ray, deepspeed and what they need) are installed to /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-check}}
work=${WORK:-/tmp/lmindexer-gpu}
mkdir -p "$out" "$work"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, ray, deepspeed, transformers as t; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'ray', ray.__version__, 'deepspeed', deepspeed.__version__, 'transformers', t.__version__)" | tee -a "$out/gpu.txt"

parts=" ${PARTS:-pipeline train throughput} "

if [[ $parts == *" pipeline "* ]]; then
start=$(date +%s)
python3 -m lmindexer.cli run --config configs/quickstart.yaml output_dir="$work/quickstart" \
  train.use_gpu=true train.num_workers=1 train.cpus_per_worker=1 indexer.num_positions=2 \
  indexer.continuous_epochs=1 indexer.joint_epochs=2 generator.run_tasks=[retrieval] generator.epochs=3 \
  2>&1 | tee "$out/pipeline.log" | grep -E "^\S+ lmindexer|\[[0-9]/|done in|Error|error" || true
echo "pipeline on the GPU: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
cp "$work"/quickstart/generator-*/eval-test/metrics.json "$out/generator-metrics.json"
fi

if [[ $parts == *" train "* ]]; then
python3 -m bench.train_throughput --gpu --preset base --examples 8192 --out "$out/gpu-train.json" \
  2>&1 | tee "$out/train.log" | grep -E "^\||^[0-9]+ examples|GFLOP|^plain|^\{" || true
fi

if [[ $parts == *" throughput "* ]]; then
python3 -m bench.gpu_throughput --out "$out/gpu-throughput.json" --work "$work/throughput" \
  2>&1 | tee "$out/throughput.log" | grep -E "^\{|^assign-ids|^learn-ids|GFLOP|Error|error" || true
fi
