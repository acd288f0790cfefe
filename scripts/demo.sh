#!/usr/bin/env bash
# Set up (idempotent) and run the main job. Results land in ./results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_SILENT=true RAY_USAGE_STATS_ENABLED=0
mkdir -p results
.venv/bin/prunetune sweep search_spaces/demo_mnist1d.yaml "$@"
