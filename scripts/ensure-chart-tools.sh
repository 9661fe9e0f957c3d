#!/usr/bin/env bash
# Makes sure the Helm chart tests have their tools, and prints where they are
# as shell assignments for the Makefile to eval:
#
#   eval "$(bash scripts/ensure-chart-tools.sh)"
#   "$PARLEY_HELM" lint --strict charts/parley
#   "$PARLEY_PROMTOOL" check rules rules.yaml
#
#   helm      built from the Go module proxy (helm.sh/helm/v3, pinned below)
#             into $PARLEY_CACHE_DIR/bin once, then reused as long as it
#             reports the pinned version
#   promtool  from Debian's `prometheus` package (apt-get install when
#             missing; only the package's files are wanted, its daemon is
#             neither needed nor started here)
#
# Progress goes to stderr; stdout carries only the two assignments.
#
# Environment:
#   PARLEY_CACHE_DIR   cache root (default $HOME/.cache/parley)
#   GO                 go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

HELM_VERSION=v3.22.0

me="ensure-chart-tools"
say() { echo "$me: $*" >&2; }
die() { echo "$me: error: $*" >&2; exit 1; }

bin_dir="${PARLEY_CACHE_DIR:-$HOME/.cache/parley}/bin"
helm="$bin_dir/helm"

helm_ready() { [[ -x $helm ]] && [[ $("$helm" version --template '{{.Version}}' 2>/dev/null) == "$HELM_VERSION" ]]; }

if ! helm_ready; then
  go_bin=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  [[ -x $go_bin ]] || die "no Go toolchain to build helm with (set GO=/path/to/go)"
  mkdir -p "$bin_dir"
  # Two test runs starting together must not both build it.
  exec 9>"$bin_dir/.helm.lock"
  flock 9
  if ! helm_ready; then
    say "building helm $HELM_VERSION from the Go module proxy into $bin_dir (cold: a few minutes)..."
    started=$SECONDS
    # Helm's release builds stamp its version and the Kubernetes version it
    # assumes for `helm template`/`lint` (that of its client-go, else 1.20)
    # through ldflags; the same here.
    gomod=$("$go_bin" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
    client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
    [[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "no k8s.io/client-go v0.x in $gomod"
    k8s_minor=${BASH_REMATCH[1]}
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
    GOBIN="$bin_dir" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" "$go_bin" install -ldflags="$ldflags" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    helm_ready || die "$helm does not report version $HELM_VERSION after the build"
    say "helm built in $((SECONDS - started))s"
  fi
  exec 9>&-
fi

promtool=$(command -v promtool || true)
if [[ -z $promtool ]]; then
  command -v apt-get >/dev/null 2>&1 || die "promtool not found and apt-get is not available; install Prometheus' promtool and run again"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or passwordless sudo) to apt-get install prometheus"
    SUDO=(sudo -n)
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/$me-apt.XXXXXX")
  # An old or missing package list would not know the package: update first.
  say "apt-get update"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "apt-get update failed (full log: $log)"; }
  say "apt-get install prometheus (for promtool)"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >>"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "apt-get install prometheus failed (full log: $log)"; }
  rm -f "$log"
  promtool=$(command -v promtool || true)
  [[ -n $promtool ]] || die "promtool still missing after apt-get install prometheus"
fi

printf 'PARLEY_HELM=%q\nPARLEY_PROMTOOL=%q\n' "$helm" "$promtool"
