#!/usr/bin/env bash
# Formats (default) or checks (--check) every C++ file of the project with .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -co --exclude-standard '*.cc' '*.h' '*.cu' '*.cuh' | grep -v '^tests/data/')
[ ${#files[@]} -eq 0 ] && exit 0
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}"
  echo "formatting: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
