#!/usr/bin/env bash
# Every GPU-side check of restore in one run (issue 10): training speed against BasicSR's loop in
# fp32 / bf16 / bf16+channels_last+compile, UPS vs SwinIR-light latency, the released PS weights on
# the GPU vs the CPU, and two processes on one GPU. Prints markdown tables; exit status 1 when a
# check fails. Under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh                 # the full check on the CUDA device
#   bash benchmarks/gpu_check.sh --cpu --quick   # every step with tiny sizes on the CPU (CI runs this)
#   bash benchmarks/gpu_check.sh --steps train,latency --keep /tmp/gpu_check
#
# It needs only the working tree (datasets/, scikit-image's photos) and, for the PS step, the
# authors' weights in ../shared/weights/ps (or $RESTORE_WEIGHTS_DIR); see benchmarks/gpu_check.py.
# restore must be installed once (`pip install -e .`, for its dependencies and plugin entry points);
# the code that runs is this checkout's. PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
