#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow end-to-end tests included, plus ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_SILENT=true WANDB_MODE=offline RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
.venv/bin/ruff check .
.venv/bin/python -m pytest -q --timeout=900 "$@"
