#!/usr/bin/env bash
# Run every Go fuzz target in the repository for a while each:
#
#   scripts/fuzz.sh [FUZZTIME]      (default 10s; e.g. 2m for a longer hunt)
#
# go test -fuzz takes one target of one package at a time, so this finds
# them (func FuzzXxx in *_test.go) and runs them one after the other. New
# crashers land in the package's testdata/fuzz/FuzzXxx/ and fail the run;
# commit them with the fix, as seeds.
#
# Go before 1.27 can fail a target at the end of a -fuzztime duration with a
# bare "context deadline exceeded" and no input written: a race in its
# fuzzing coordinator (golang/go#75804), not a finding. A target that fails
# that way, with no new file in its testdata/fuzz directory, runs once more;
# any other failure, or the same one twice, fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-10s}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# corpus_count PKG TARGET: the files in the target's corpus directory (0
# while it does not exist).
corpus_count() {
  { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | wc -l
}

# fuzz_one PKG TARGET fuzzes one target, once more after the coordinator's
# race (above).
fuzz_one() {
  local pkg="$1" target="$2" attempt before
  for attempt in 1 2; do
    printf '=== fuzz %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
    before=$(corpus_count "$pkg" "$target")
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; then
      return 0
    fi
    if [ "$attempt" = 1 ] && [ "$(corpus_count "$pkg" "$target")" = "$before" ] &&
      grep -q '^    context deadline exceeded$' "$log"; then
      echo "fuzz: $target stopped with Go's fuzztime race (no input written), running it once more" >&2
      continue
    fi
    return 1
  done
}
found=0
while IFS= read -r file; do
  pkg="./$(dirname "$file")"
  while IFS= read -r target; do
    found=$((found + 1))
    fuzz_one "$pkg" "$target"
  done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file")
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
[ "$found" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }
echo "fuzzed $found targets for $fuzztime each"
