#!/usr/bin/env bash
# Installs everything pagoda needs to build and test on a fresh Debian 12 machine: Debian packages
# with apt-get, Python test packages with pip. Safe to run again; it skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3 python3-pip
  clang libclang-rt-14-dev clang-format clang-tidy
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libfmt-dev libcli11-dev libpcre2-dev libxxhash-dev
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libdnnl-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt; then
  echo "install: pip install -r tests/requirements.txt failed" >&2
  exit 1
fi
echo "install: done"
