#!/usr/bin/env bash
# Builds (once) and prints the directory holding etcd, kube-apiserver and
# kube-controller-manager for the operator tests:
#
#   dir=$(bash scripts/ensure-controlplane.sh)   # → ~/.cache/parley/controlplane/v1.36.3
#   "$dir/kube-apiserver" --version
#
# The binaries come from the Go module proxy through the wrapper module in
# test/operator/controlplane (k8s.io/kubernetes + etcdmain). A cold build takes
# minutes; afterwards the binaries are reused as long as the wrapper's inputs
# (go.mod, go.sum, the mains, the build flags below) are unchanged, which is
# checked without invoking go, so a warm run takes well under a second.
#
# Environment:
#   PARLEY_CACHE_DIR   cache root (default $HOME/.cache/parley)
#   GO                 go binary (default: go on PATH, else /usr/local/go/bin/go)
#   PARLEY_BUILD_JOBS  parallel compile jobs, go build -p (default: CPU count)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
module="$root/test/operator/controlplane"

go_bin=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $go_bin ]] || { echo "ensure-controlplane: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$module/go.mod")
[[ $k8s_version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "ensure-controlplane: no k8s.io/kubernetes v1.x.y in $module/go.mod" >&2; exit 1; }
k8s_minor=${BASH_REMATCH[1]}

# What kube-apiserver reports from /version; without it the server says
# v0.0.0-master and clients that compare versions get confused.
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# -s -w drop the symbol table and DWARF (smaller binaries, shorter link);
# -trimpath keeps the build independent of where the module cache lives.
ldflags="-s -w$version_ldflags"
# -mod=mod: a go.mod/go.sum that is not quite tidy (hand-edited, or a newer Go
# wanting more go.sum lines) is completed from the proxy instead of failing. -buildvcs=false: the repo's git state is not
# the binaries' version (and git may refuse a CI checkout owned by another user).
goflags="-mod=mod -buildvcs=false"
jobs=${PARLEY_BUILD_JOBS:-$(nproc)}

out="${PARLEY_CACHE_DIR:-$HOME/.cache/parley}/controlplane/$k8s_version"
stamp=$( {
  cat "$module/go.mod" "$module/go.sum" "$module"/cmd/*/main.go
  echo "$goflags $ldflags"
  "$go_bin" env GOVERSION GOOS GOARCH 2>/dev/null || true
} | sha256sum | cut -d' ' -f1)

binaries=(etcd kube-apiserver kube-controller-manager)
ready() {
  for b in "${binaries[@]}"; do [[ -x $out/$b ]] || return 1; done
  [[ $(cat "$out/.stamp" 2>/dev/null) == "$stamp" ]]
}

if ready; then echo "$out"; exit 0; fi

mkdir -p "$out"
# Two test runs starting together must not both spend minutes building.
exec 9>"$out/.lock"
flock 9
if ready; then echo "$out"; exit 0; fi

echo "ensure-controlplane: building ${binaries[*]} $k8s_version into $out (cold: several minutes)..." >&2
started=$SECONDS
staging=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
(
  cd "$module"
  # CGO off: static binaries, as upstream ships them, and no C toolchain needed.
  GOFLAGS=$goflags CGO_ENABLED=0 "$go_bin" build -p "$jobs" \
    -trimpath -ldflags="$ldflags" -o "$staging/" "${binaries[@]/#/./cmd/}"
)
for b in "${binaries[@]}"; do mv -f "$staging/$b" "$out/"; done
echo "$stamp" >"$out/.stamp"
echo "ensure-controlplane: built in $((SECONDS - started))s" >&2
echo "$out"
