#!/usr/bin/env bash
# Prints the git ref that buf breaking compares proto/ against: the main
# branch when working on another branch, else the previous commit. Prints
# nothing when there is no such ref (the first commit).
set -euo pipefail
branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || true)
if [ "$branch" != "main" ] && git rev-parse --verify -q main >/dev/null; then
  echo main
elif git rev-parse --verify -q HEAD~1 >/dev/null; then
  echo HEAD~1
fi
