#!/usr/bin/env bash
# The xpu checks and the decode benchmark of bench/RESULTS.md, on a machine with an OpenCL GPU,
# from a bundle made by scripts/bundle.sh (run from the repository root; tests/ must be there):
#   bench/xpu_device.sh BUNDLE_DIR LOG_DIR
# Writes info.txt, ops.txt, golden.txt, decode.txt, decode_profile.txt and the compiled kernel
# program (kernels.bin; PTX text on NVIDIA) to LOG_DIR.
set -uo pipefail
bundle=$(cd "${1:?bundle dir}" && pwd)
logs=${2:?log dir}
mkdir -p "$logs"
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Where NVIDIA's OpenCL driver is installed but not registered with the ICD loader (containers
# often lack /etc/OpenCL/vendors/nvidia.icd), register it for this run.
driver=$(ldconfig -p | awk '/libnvidia-opencl.so.1/ {print $NF; exit}')
if [[ -z ${OCL_ICD_VENDORS:-} && -n $driver ]] && ! grep -qs nvidia /etc/OpenCL/vendors/*.icd; then
  mkdir -p /tmp/pagoda-icd
  echo "$driver" >/tmp/pagoda-icd/nvidia.icd
  export OCL_ICD_VENDORS=/tmp/pagoda-icd
fi
export PAGODA_KERNEL_CACHE=/tmp/pagoda-kernels
rm -rf "$PAGODA_KERNEL_CACHE"
pagoda=$bundle/pagoda
config=tests/data/configs/llama3_8b_config.json
"$pagoda" info --devices 2>&1 | tee "$logs/info.txt"
"$bundle/pagoda_unit_tests" --gtest_filter='Backends/*xpu*:XpuRuntime*:Engine.Xpu*' >"$logs/ops.txt" 2>&1
echo "ops: $(grep -E '^\[  (PASSED|FAILED)' "$logs/ops.txt" | tr '\n' ' ')"
cp "$PAGODA_KERNEL_CACHE"/*.bin "$logs/kernels.bin" 2>/dev/null
PAGODA_BIN=$pagoda python3 -m pytest tests/models/test_xpu_models.py -q -p no:cacheprovider >"$logs/golden.txt" 2>&1
echo "golden: $(tail -1 "$logs/golden.txt")"
"$pagoda" bench decode "$config" --load-format dummy --dtype f16 --device xpu --batch 1,32 --copy-mib 1024 \
  2>&1 | tee "$logs/decode.txt"
"$pagoda" bench decode "$config" --load-format dummy --dtype f16 --device xpu --batch 1,32 --steps 16 --profile \
  >"$logs/decode_profile.txt" 2>&1
grep -A14 '^batch 1:' "$logs/decode_profile.txt"
