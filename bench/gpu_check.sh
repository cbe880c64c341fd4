#!/usr/bin/env bash
# Acceptance check of the CUDA backend on a machine with an NVIDIA GPU (the lent
# H100/H200). Run from the repository root:
#
#     bash bench/gpu_check.sh            # logs to $OUT, or ./gpu_check_out
#
# Stages: environment, build for sm_90, full test suite (every CUDA test with
# both time loops, TTFS_CUDA_SCHEDULE=step and =layer), the benchmark's
# reference configurations (ttfs-cuda with both time loops, in one run), a
# per-launch profile of the layer-major loop on VGG, the ttfs-window coding
# against the original on lenet, resnet and vgg (checked against the CPU backend),
# compute-sanitizer (memcheck, racecheck, initcheck) on tiny simulations with
# both time loops (the layer-major one also in windows), then (time
# permitting) TTFS_CUDA_SYNAPSES=gather and early stop for comparison. Every stage has a timeout inside one overall budget (BUDGET_S,
# default 450 s), so the script ends well under 8 minutes. At most 8 files are
# written to $OUT (the device tool's limit). Exit status: 0 when every stage
# that ran passed.
set -uo pipefail
export PYTHONUNBUFFERED=1

OUT="${OUT:-$PWD/gpu_check_out}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-450}"
mkdir -p "$OUT"
START=$SECONDS
FAILED=()
SUMMARY=()

# Seconds a stage may take: its own cap, within what is left of the budget.
allowance() {
  local cap=$1 left=$((BUDGET_S - (SECONDS - START)))
  ((left < cap)) && cap=$left
  ((cap < 5)) && cap=5
  echo "$cap"
}

# stage NAME CAP_SECONDS COMMAND...: runs COMMAND with a timeout, records the result.
stage() {
  local name=$1 cap=$2
  shift 2
  local limit t0=$SECONDS rc
  limit=$(allowance "$cap")
  echo "=== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local line="$name: exit $rc after $((SECONDS - t0)) s"
  ((rc == 124 || rc == 137)) && line="$line (timed out)"
  echo "=== $line"
  SUMMARY+=("$line")
  ((rc == 0)) || FAILED+=("$name")
  return $rc
}

finish() {
  echo
  echo "=== summary ($((SECONDS - START)) s in all; logs in $OUT)"
  printf '  %s\n' "${SUMMARY[@]}"
  if ((${#FAILED[@]})); then
    echo "FAILED: ${FAILED[*]}"
    exit 1
  fi
  echo "ALL PASSED"
  exit 0
}

# ------------------------------------------------------------------ environment
{
  echo "# nvidia-smi"
  nvidia-smi 2>&1
  echo "# nvcc"
  nvcc --version 2>&1 | tail -n 2
  echo "# $PY"
  "$PY" --version 2>&1
} | tee "$OUT/env.txt"

# ------------------------------------------------------------------ build
build() {
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90 ${CMAKE_ARGS:-}" \
    "$PY" -m pip install -v --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1
  local rc=$?
  grep -E "CUDA backend enabled|Build files have been written|Successfully installed|error" "$OUT/build.log" | tail -n 15
  return $rc
}
stage build 240 build || finish

check_info() {
  # run from the tests folder so that the installed package is imported
  (cd tests && "$PY" - <<'EOF'
import json
import ttfs_native as tn
info = tn.build_info()
print(json.dumps(info, indent=1))
assert info["cuda"], "built without the CUDA backend"
assert "90" in info["cuda_architectures"], info["cuda_architectures"]
assert info["cuda_available"], info["cuda_status"]
EOF
  ) 2>&1 | tee -a "$OUT/env.txt"
}
stage cuda_available 60 check_info || finish

# ------------------------------------------------------------------ tests
run_tests() {
  "$PY" -m pytest tests -q -rs -p no:cacheprovider >"$OUT/tests.log" 2>&1
  local rc=$?
  grep -E "first-spike|passed|failed|error|SKIPPED" "$OUT/tests.log" | tail -n 25
  return $rc
}
stage tests 210 run_tests

# ------------------------------------------------------------------ benchmark
if [ -f bench/__main__.py ]; then
  # The issue's reference configurations (VGG b256 T100, LeNet b1/b256 T64,
  # MobileNet b256 T100), event-driven synaptic input (the default), ttfs-cuda
  # with the step and the layer time loop ...
  run_bench() {
    "$PY" -m bench --device cuda --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1
    local rc=$?
    tail -n 30 "$OUT/bench.log"
    return $rc
  }
  stage bench 170 run_bench
  # Where the layer-major loop's time goes: per-launch times (cuda_profile) of
  # VGG b256 T100, appended to bench.log.
  run_profile() {
    local dir rc
    dir=$(mktemp -d)
    {
      echo "=== cuda_profile=True cuda_schedule=layer, VGG b256 T100 (warm-up run, then a second)"
      "$PY" -m bench --save-models "$dir" --save-only --nets vgg -q &&
        "$PY" - "$dir" <<'PY'
import sys, numpy as np, ttfs_native as tn
from ttfs_native.simulation import EngineOptions
model = tn.load_model(f"{sys.argv[1]}/vgg")
x = np.load(f"{sys.argv[1]}/vgg.inputs.npy")[:256]
sim = tn.Simulator(model, duration=100, backend="cuda", batch_size=256,
                   options=EngineOptions(cuda_schedule="layer", cuda_profile=True))
sim.run(x)
sim.run(x)
PY
    } >>"$OUT/bench.log" 2>&1
    rc=$?
    tail -n 22 "$OUT/bench.log"
    rm -rf "$dir"
    return $rc
  }
  stage profile 60 run_profile
  # The ttfs-window coding on the card: both codings at batch 256, each result
  # checked bit for bit against the CPU backend's (bench/window_speed.py).
  run_window() {
    echo "=== ttfs-window (python -m bench.window_speed --backend cuda)" >>"$OUT/bench.log"
    "$PY" -m bench.window_speed --backend cuda --nets lenet,resnet,vgg --batch 256 --rounds 5 \
      --threads "$(nproc)" >>"$OUT/bench.log" 2>&1
    local rc=$?
    tail -n 12 "$OUT/bench.log"
    return $rc
  }
  stage window 100 run_window
else
  echo "=== bench/__main__.py not found: benchmark skipped"
  SUMMARY+=("bench: skipped (no bench/__main__.py)")
fi

# ------------------------------------------------------------------ sanitizers
SANITIZER=$(command -v compute-sanitizer || true)
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
TINY_DIR=$(mktemp -d)
cat >"$TINY_DIR/tiny_cuda_run.py" <<'EOF'
"""A few tiny CUDA simulations covering every kernel (checked against the CPU backend)."""
import sys
import numpy as np
sys.path.insert(0, "tests")
import netgen
import ttfs_native as tn
from ttfs_native.simulation import EngineOptions

for schedule in ("step", "layer"):
    for arch, kwargs in [("depthwise_maxpool", dict(duration=12, early_stop=True)),
                         ("branches_concat", dict(duration=10)),
                         ("softmax_output", dict(duration=10, seed=3))]:
        for window in (None, 4):  # the layer-major loop in one window, and in windows of 4 steps
            model, x, labels = netgen.make(arch, n=3)
            sim = tn.Simulator(model, backend="cuda", batch_size=2,
                               options=EngineOptions(cuda_schedule=schedule, cuda_window=window), **kwargs)
            assert sim._engine.schedule == schedule
            got = sim.run(x, labels)
            want = tn.Simulator(model, backend="cpu", **kwargs).run(x, labels)
            assert np.array_equal(got.counts, want.counts), arch
            assert np.array_equal(got.synops_t, want.synops_t), arch
            print(schedule, arch, f"window {sim._engine.window_steps}", "ok")
            if schedule == "step":
                break
# input read in place from device memory, first-spike times left there
model, x, labels = netgen.make("depthwise_maxpool", n=3)
sim = tn.Simulator(model, backend="cuda", duration=10, batch_size=2, spike_times_on_device=True)
got = sim.run(tn.DeviceArray.from_numpy(x), labels)
want = tn.Simulator(model, backend="cpu", duration=10).run(x, labels)
for name, times in want.first_spike_times.items():
    assert np.array_equal(np.asarray(got.first_spike_times[name]), times), name
print("device input and output ok")
EOF

sanitize() {
  local tool=$1 log="$OUT/$1.log"
  "$SANITIZER" --tool "$tool" --error-exitcode 9 --target-processes all \
    "$PY" "$TINY_DIR/tiny_cuda_run.py" >"$log" 2>&1
  local rc=$?
  tail -n 8 "$log"
  if ((rc != 0)) && grep -q "Device not supported" "$log"; then
    echo "compute-sanitizer does not support this machine's device (gVisor?): not a failure of ours"
    return 0
  fi
  return $rc
}
if [ -n "$SANITIZER" ]; then
  for tool in memcheck racecheck initcheck; do
    stage "$tool" 75 sanitize "$tool"
  done
else
  echo "=== compute-sanitizer not found: sanitizer stages skipped"
  SUMMARY+=("sanitizers: skipped (compute-sanitizer not found)")
fi
rm -rf "$TINY_DIR"

# ------------------------------------------------------------------ comparison
if [ -f bench/__main__.py ]; then
  # With what time is left: the step loop with the full fan-in gather, for comparison.
  run_bench_gather() {
    echo "=== TTFS_CUDA_SYNAPSES=gather" >>"$OUT/bench.log"
    TTFS_CUDA_SYNAPSES=gather "$PY" -m bench --device cuda --nets vgg,lenet --cuda-schedules step \
      >>"$OUT/bench.log" 2>&1
    local rc=$?
    tail -n 8 "$OUT/bench.log"
    return $rc
  }
  stage bench_gather 90 run_bench_gather
  # Early stop: the step loop polls every 8 steps, the layer-major loop ends
  # after the window (a quarter of the run) in which every sample stopped.
  run_bench_early_stop() {
    echo "=== --early-stop" >>"$OUT/bench.log"
    "$PY" -m bench --device cuda --nets lenet,vgg --early-stop >>"$OUT/bench.log" 2>&1
    local rc=$?
    tail -n 8 "$OUT/bench.log"
    return $rc
  }
  stage bench_early_stop 90 run_bench_early_stop
fi

finish
