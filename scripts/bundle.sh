#!/usr/bin/env bash
# Copies pagoda and its unit-test binary (and the CPU kernel benchmarks where they were built), with the shared libraries they use beyond the C library,
# into one folder that runs on another x86-64 Linux machine without installing anything:
#   scripts/bundle.sh [BUILD_DIR] [DEST]      (defaults: build/release, build/bundle)
# Run from DEST with LD_LIBRARY_PATH=DEST/lib (bench/xpu_device.sh does). The OpenCL ICD loader
# travels too; the GPU vendor's OpenCL driver must be on the target machine.
set -euo pipefail
build=${1:-build/release}
dest=${2:-build/bundle}
bins=("$build/tools/pagoda/pagoda" "$build/tests/pagoda_unit_tests")
for b in "${bins[@]}"; do
  [[ -x $b ]] || { echo "bundle: $b is missing; build it first (cmake --build $build --target pagoda pagoda_unit_tests)" >&2; exit 1; }
done
for extra in bench/cpu_qdot/pagoda_cpu_qdot_bench bench/cpu_matmul/pagoda_cpu_matmul_bench; do
  [[ -x $build/$extra ]] && bins+=("$build/$extra")
done
rm -rf "$dest"
mkdir -p "$dest/lib"
cp "${bins[@]}" "$dest/"
# Every resolved library except the C runtime itself (libc, libm, the dynamic loader), which
# must come from the target system.
ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*) ;;
    *) cp -L "$lib" "$dest/lib/" ;;
  esac
done
echo "bundle: $(du -sh "$dest" | cut -f1) in $dest"
