#!/usr/bin/env bash
# Compiles every xpu OpenCL kernel ahead of time for Intel Arc (dg2-g10) and Data Center GPU Max
# (pvc) with Intel's offline compiler, both with the Intel subgroup paths enabled (as the runtime
# builds them on those GPUs) and without (the portable paths). No GPU is needed.
#
# ocloc comes with Debian's intel-opencl-icd (it also needs libigc1, libigdfcl1, libllvmspirvlib14,
# libopencl-clang14 and libigdgmm12). Set OCLOC=/path/to/ocloc to use one that is not on PATH
# (with LD_LIBRARY_PATH pointing at its libraries when they are not installed). Without either,
# the script downloads those Debian packages (apt-get download, about 14 MB) and unpacks them into
# a temporary folder: nothing is installed, so the machine's OpenCL setup stays as it is.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kernels="$root/src/backends/xpu/kernels"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ocloc="${OCLOC:-$(command -v ocloc || true)}"
if [[ -z "$ocloc" ]]; then
  echo "check_xpu_kernels: ocloc not installed; unpacking Debian's intel-opencl-icd into $work"
  mkdir -p "$work/debs" "$work/root"
  if ! (cd "$work/debs" && apt-get download intel-opencl-icd libigc1 libigdfcl1 libllvmspirvlib14 \
          libopencl-clang14 libigdgmm12 > "$work/download.log" 2>&1); then
    cat "$work/download.log" >&2
    echo "check_xpu_kernels: could not download intel-opencl-icd (set OCLOC=... to use an installed ocloc)" >&2
    exit 2
  fi
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  ocloc="$work/root/usr/bin/ocloc"
  export LD_LIBRARY_PATH="$work/root/usr/lib/x86_64-linux-gnu:$work/root/usr/local/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

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
