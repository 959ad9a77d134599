#!/usr/bin/env bash
# Run every Go fuzz target in the repository for a while each:
#
#   scripts/fuzz.sh [FUZZTIME]      (default 10s; e.g. 2m for a longer hunt)
#
# go test -fuzz takes one target of one package at a time, so this finds
# them (func FuzzXxx in *_test.go) and runs them one after the other. New
# crashers land in the package's testdata/fuzz/FuzzXxx/ and fail the run;
# commit them with the fix, as seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-10s}"
found=0
while IFS= read -r file; do
  pkg="./$(dirname "$file")"
  while IFS= read -r target; do
    found=$((found + 1))
    printf '=== fuzz %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file")
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
[ "$found" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }
echo "fuzzed $found targets for $fuzztime each"
