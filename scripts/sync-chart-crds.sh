#!/usr/bin/env bash
# Copies the CRDs (crds/*.yaml, their one source) into the Helm chart
# (charts/parley/files/crds/), which cannot read files outside itself.
# Run it after editing crds/; test/operator/helm.test.ts fails until the two
# are byte-equal.
#
# Usage: scripts/sync-chart-crds.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/charts/parley/files/crds"
mkdir -p "$dest"
# Copies of CRDs removed from crds/ go too.
for f in "$dest"/*.yaml; do
  [[ -e $f ]] || continue
  [[ -e $root/crds/$(basename "$f") ]] || { rm -f "$f"; echo "removed $(basename "$f")"; }
done
for f in "$root"/crds/*.yaml; do
  if ! cmp -s "$f" "$dest/$(basename "$f")"; then
    cp "$f" "$dest/"
    echo "copied crds/$(basename "$f")"
  fi
done
