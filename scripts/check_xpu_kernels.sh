#!/usr/bin/env bash
# Compiles every xpu OpenCL kernel ahead of time for Intel Arc (dg2-g10) and Data Center GPU Max
# (pvc) with Intel's offline compiler, both with the Intel subgroup paths enabled (as the runtime
# builds them on those GPUs) and without (the portable paths). No GPU is needed.
#
# ocloc comes with Debian's intel-opencl-icd (it also needs libigc1, libigdfcl1, libllvmspirvlib14
# and libopencl-clang14). Set OCLOC=/path/to/ocloc to use one that is not on PATH (with
# LD_LIBRARY_PATH pointing at its libraries when they are not installed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kernels="$root/src/backends/xpu/kernels"
ocloc="${OCLOC:-$(command -v ocloc || true)}"
if [[ -z "$ocloc" ]]; then
  echo "check_xpu_kernels: ocloc not found (apt-get install intel-opencl-icd, or set OCLOC=...)" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One program, in the order the runtime builds it: common.cl first, then the rest by name.
program="$work/pagoda_xpu.cl"
cat "$kernels/common.cl" > "$program"
for f in $(ls "$kernels"/*.cl | sort); do
  [[ "$(basename "$f")" == common.cl ]] && continue
  printf '\n// ---- %s\n' "$(basename "$f")" >> "$program"
  cat "$f" >> "$program"
done

status=0
for device in dg2-g10 pvc; do
  for variant in subgroups portable; do
    options="-cl-std=CL1.2"
    [[ "$variant" == subgroups ]] && options="$options -DPAGODA_INTEL_SUBGROUPS=1"
    out="$work/$device-$variant"
    mkdir -p "$out"
    if "$ocloc" compile -file "$program" -device "$device" -options "$options" -out_dir "$out" \
        > "$out/log.txt" 2>&1; then
      echo "ok    $device ($variant): $(ls "$out" | grep -c '\.bin$') binary"
    else
      echo "FAIL  $device ($variant):"
      cat "$out/log.txt"
      status=1
    fi
  done
done
exit $status
