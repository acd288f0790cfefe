#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow end-to-end tests included, plus ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian's Chromium renders the HTML report in a test (headless; no network needed).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing chromium (report rendering test)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium \
    >/dev/null || echo "[setup] warning: chromium install failed; the browser test will fail"
fi
export WANDB_SILENT=true WANDB_MODE=offline RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
# our modules' bytecode once: the tests start hundreds of processes (Ray workers, CLI runs), and
# where PYTHONDONTWRITEBYTECODE is set (this machine sets it) each would compile them again
.venv/bin/python -m compileall -q pruning_core sweeps >/dev/null
.venv/bin/ruff check .
.venv/bin/python -m pytest -q --timeout=900 --durations=30 "$@"
