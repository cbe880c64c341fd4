#!/usr/bin/env bash
# Build the extension with AddressSanitizer + UndefinedBehaviorSanitizer and
# run the test suite against it. Usage: scripts/sanitize.sh [pytest args]
# The instrumented package goes to build/asan-site; the normal install is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
site=build/asan-site
rm -rf "$site"
python3 -m pip install --no-build-isolation --no-deps -q --target "$site" \
  -C cmake.define.TTFS_SANITIZE=ON -C cmake.define.TTFS_CUDA=OFF -C build-dir=build/asan .
libasan=$(g++ -print-file-name=libasan.so)
libubsan=$(g++ -print-file-name=libubsan.so)
# Python itself leaks by design at exit: leak checking would only report CPython.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LD_PRELOAD="$libasan $libubsan" PYTHONPATH="$PWD/$site" python3 -c \
  "import ttfs_native, sys; assert ttfs_native.__file__.startswith('$PWD/$site'), ttfs_native.__file__; print('sanitized build:', ttfs_native.__file__)"
LD_PRELOAD="$libasan $libubsan" PYTHONPATH="$PWD/$site" python3 -m pytest tests -q -p no:cacheprovider "$@"
