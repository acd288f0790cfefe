#!/usr/bin/env bash
# Set up (idempotent) and run the main job. Results land in ./results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_SILENT=true RAY_USAGE_STATS_ENABLED=0
mkdir -p results
args=()
if [ -d results/demo_mnist1d/tune ]; then
  # idempotent: a second run finishes an interrupted demo, or shows the finished one again
  echo "[demo] results/demo_mnist1d exists: resuming it (remove that folder for a fresh demo)"
  args+=(--resume)
fi
.venv/bin/prunetune sweep search_spaces/demo_mnist1d.yaml "${args[@]}" "$@"
