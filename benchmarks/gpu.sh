#!/usr/bin/env bash
# Every GPU row of benchmarks/RESULTS.md in one call, on one H100/H200 (issue 20, item 6):
#
#   packing_cnn1d   bench_packing.py: cnn1d on MNIST-1D, K = 1 8 32 128, batch 128  (Packing)
#   packing_resnet  bench_packing.py: ResNet-20 at CIFAR shapes, K = 1 8 32 128, batch 128
#   nm              bench_nm.py: 2:4 semi-structured against dense                 (GPU figures)
#   engine          bench_engine.py: masked train step, SNIP and SynFlow costs, scoring memory
#   structured      bench_structured.py: channel pruning speed-up (compacted vs dense)
#   train           bench_train.py: training epoch, device-resident loader vs a DataLoader
#   members         bench_member_costs.py: a cnn1d pack's K = 128 members, batched scoring on/off
#   exactness       tests/packing/test_exactness.py on the device (packed member = solo run)
#
# Each step runs under its own timeout (the sum is 480 s, 8 minutes), a failed or timed-out
# step does not stop the others, and each prints where its JSON went; the last line is the
# summary (gpu_summary.json: every step's exit code, seconds and JSON). The budgets were set
# from one H200 lease (2026-12-04, benchmarks/README.md): a step that runs out keeps what its
# script had written (bench_packing after every row, bench_engine after every section).
#
# On the GPU machine, from the repository root, with the device bundle copied beside it
# (../shared/tools/device-bundle.sh):
#   bash .devbundle/install.sh && export PYTHONPATH=/tmp/site:$PWD
#   bash benchmarks/gpu.sh                      # JSON in benchmarks/results/gpu/
#
#   bash benchmarks/gpu.sh --dry-run --out DIR  # every step tiny on CPU (a smoke test, tests/)
#   bash benchmarks/gpu.sh --only engine,structured   # some steps only (names as above)
#
# PYTHON (default python3) is the interpreter.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$root/benchmarks/results/gpu"
dry=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    --only) only=",$2,"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (use --dry-run, --out DIR, --only STEP,...)" >&2; exit 2 ;;
  esac
  shift
done
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-$root}"
cd "$root" || exit 1
summary=()

step() {  # step NAME TIMEOUT_S JSON COMMAND...
  local name=$1 secs=$2 json=$3; shift 3
  if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then return 0; fi
  echo "== $name (timeout ${secs} s): $*"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$secs" "$@"
  rc=$?
  local took=$((SECONDS - t0))
  if [ -s "$json" ]; then
    echo "== $name: exit $rc after ${took} s; JSON: $json"
  else
    echo "== $name: exit $rc after ${took} s; no JSON written"
  fi
  summary+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $took, \"json\": \"$json\", \"written\": $([ -s "$json" ] && echo true || echo false)}")
}

if [ "$dry" = 1 ]; then
  dev=cpu
  pack_cnn=(--ks 1 2 --resnet-ks --epochs 1 --train-examples 128 --test-examples 64
            --solo-max 1)
  pack_res=(--ks --resnet-ks 2 --epochs 1 --resnet-examples 16 --resnet-batch 8
            --test-examples 16 --solo-max 1)
  nm=(--quick)
  engine=(--quick --reps 1 --inner 1 --warmup 0 --synflow-iters 2 --snip-batches 1 --batch 4)
  structured=(--quick)
  train=(--examples 64 --batch 32 --reps 1 --workers 0 --threads 1)
  members=(--k 2 --epochs 0 --train-examples 64 --test-examples 32 --reps 1 --rounds 1
           --modes now no-batched-scoring)
  t_pack=120; t_res=120; t_nm=60; t_engine=240; t_struct=120; t_train=120; t_mem=120
  t_exact=120
  exact=(-k cnn1d)  # one check on CPU: the step runs; CI runs them all anyway
else
  dev=cuda
  pack_cnn=(--ks 128 32 8 1 --resnet-ks --batch 128 --train-examples 4000)  # largest K first
  pack_res=(--ks --resnet-ks 128 32 8 1 --resnet-batch 128 --resnet-examples 2048)
  nm=()
  engine=(--reps 7 --inner 5 --warmup 5 --synflow-iters 50)  # the defaults ran past 60 s
  structured=()
  train=(--examples 20000 --batch 128 512 --reps 2 --workers 8 --threads 8)
  members=(--k 128 --reps 2 --rounds 1 --modes now no-batched-scoring no-reuse)
  # engine ran 41 s and structured 17 s on the H200: 20 + 10 s of their caps went to members
  t_pack=120; t_res=140; t_nm=30; t_engine=50; t_struct=25; t_train=50; t_mem=30; t_exact=35
  exact=()
fi

echo "gpu.sh: device $dev, JSON under $out, $(date -u +%FT%TZ)"
if [ "$dev" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
step packing_cnn1d "$t_pack" "$out/packing_cnn1d.json" \
  "$py" benchmarks/bench_packing.py --device "$dev" "${pack_cnn[@]}" --out "$out/packing_cnn1d.json"
step packing_resnet "$t_res" "$out/packing_resnet20.json" \
  "$py" benchmarks/bench_packing.py --device "$dev" "${pack_res[@]}" --out "$out/packing_resnet20.json"
step nm "$t_nm" "$out/nm.json" \
  "$py" benchmarks/bench_nm.py --device "$dev" "${nm[@]}" --out "$out/nm.json"
step engine "$t_engine" "$out/engine.json" \
  "$py" benchmarks/bench_engine.py --device "$dev" "${engine[@]}" --out "$out/engine.json"
step structured "$t_struct" "$out/structured.json" \
  "$py" benchmarks/bench_structured.py --device "$dev" "${structured[@]}" --out "$out/structured.json"
step train "$t_train" "$out/train.json" \
  "$py" benchmarks/bench_train.py --device "$dev" "${train[@]}" --out "$out/train.json"
step members "$t_mem" "$out/member_costs.json" \
  "$py" benchmarks/bench_member_costs.py --device "$dev" "${members[@]}" --out "$out/member_costs.json"
# pass/fail per check in JUnit XML; TF32 stays as PyTorch sets it (docs/packing.md, Exactness)
step exactness "$t_exact" "$out/exactness.xml" \
  env PRUNETUNE_TEST_DEVICE="$dev" "$py" -m pytest -q -p no:cacheprovider "${exact[@]}" \
  tests/packing/test_exactness.py --junitxml "$out/exactness.xml"

# the device brings back at most 8 files: member_costs.json travels inside the summary
members_json=null
if [ -s "$out/member_costs.json" ]; then
  members_json=$(cat "$out/member_costs.json") && rm -f "$out/member_costs.json"
fi
{
  echo "{\"device\": \"$dev\", \"dry_run\": $([ "$dry" = 1 ] && echo true || echo false), \"date\": \"$(date -u +%FT%TZ)\", \"steps\": ["
  for i in "${!summary[@]}"; do
    [ "$i" -gt 0 ] && echo ","
    echo "${summary[$i]}"
  done
  echo "], \"member_costs\": $members_json}"
} > "$out/gpu_summary.json"
echo "gpu.sh: summary in $out/gpu_summary.json"
