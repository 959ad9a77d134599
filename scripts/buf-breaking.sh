#!/usr/bin/env bash
# buf breaking for proto/ against the tree at a git ref. The contracts import
# buf/validate/validate.proto, which no commit holds (make protodeps prints it
# from the Go module into .herald/protodeps), so the ref's proto/ is exported
# beside that directory and built into an image to compare with.
set -euo pipefail
ref=${1:?usage: buf-breaking.sh REF}
buf=(go tool -modfile=tools/buf/go.mod buf)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$ref" proto | tar -x -C "$tmp"
mkdir -p "$tmp/.herald"
cp -r .herald/protodeps "$tmp/.herald/"
cp buf.yaml "$tmp/"
"${buf[@]}" build "$tmp" -o "$tmp/against.binpb"
"${buf[@]}" breaking proto --against "$tmp/against.binpb"
