#!/usr/bin/env bash
# Run the CUDA tests (tests/test_cuda.py, and the cuda cases of tests shared
# by both native backends) without a GPU: the CUDA sources are compiled as host
# C++ against a small emulation of the CUDA runtime (cuda_runtime.h beside
# this script: blocks run one after another, a block's threads run as fibers
# that switch at barriers, so __syncthreads and warp shuffles behave). It
# checks the kernels' logic and indexing, not timing, memory-model or
# hardware behaviour: a GPU session still runs bench/gpu_check.sh.
# Usage: scripts/cuda_emulation/run.sh [pytest args]   (about 7 minutes on 2 cores)
# EMU_ORDER=reverse runs blocks and threads last to first (see cuda_runtime.h):
# run the suite both ways to catch results that depend on the order.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
emu="$repo/build/cuda-emu"
rm -rf "$emu" && mkdir -p "$emu/pkg" "$emu/obj"
cp -r "$repo/csrc" "$emu/src"
# the one launch site, kernel<<<...>>>(args), becomes a call into the emulator
python3 - "$emu/src/cuda/device_buffer.cuh" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);"
assert old in s, "launch site not found: update scripts/cuda_emulation/run.sh"
open(p, "w").write(s.replace(old, "  ::emu::launch(kernel, grid, block, stream, args...);"))
PY
cp -r "$repo/python/ttfs_native" "$emu/pkg/"
rm -f "$emu"/pkg/ttfs_native/_core*.so
inc="$(python3 -m pybind11 --includes) -I$repo/scripts/cuda_emulation"
flags="-std=c++17 -O2 -fPIC -ffp-contract=off -fno-fast-math -fno-trapping-math -fopenmp -DTTFS_WITH_CUDA -DTTFS_CUDA_ARCHS=\"emu\" -DTTFS_VERSION=\"emu\""
cd "$emu/src"
# every source of the module, the .cu files as C++ (two at a time: 2 cores)
objs=()
for f in $(find . -name '*.cpp' -o -name '*.cu' | sort); do
  o="$emu/obj/$(echo "${f#./}" | tr / _).o"
  objs+=("$o")
  g++ $flags $inc -x c++ -c "$f" -o "$o" &
  if (( $(jobs -rp | wc -l) >= 2 )); then wait -n; fi
done
wait
for o in "${objs[@]}"; do [[ -f "$o" ]] || { echo "compile failed: $o" >&2; exit 1; }; done
g++ -shared -fopenmp "${objs[@]}" -o "$emu/pkg/ttfs_native/_core$(python3-config --extension-suffix)"
cd "$repo"
# 66,000 samples are too slow to emulate
PYTHONPATH="$emu/pkg" python3 -m pytest tests/test_cuda.py tests/test_concurrency.py tests/test_window_native.py \
  tests/test_simulator_api.py::test_spike_times_can_be_left_out \
  tests/test_cli.py::test_simulate_reproduces_golden_case -q -p no:cacheprovider \
  --deselect tests/test_cuda.py::test_more_samples_than_one_launch_holds "$@"
