#!/usr/bin/env bash
# `make test`: installs what the tests need (Debian packages, control plane and CNI peers
# built from the Go module proxy into .cache/), then runs every check and prints a summary.
# End-to-end tests need root (network namespaces, links).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOFLAGS=-mod=mod
declare -a names results
failed=0
step() {
  local name=$1; shift
  echo "==> $name: $*"
  local start=$SECONDS
  if "$@"; then results+=("PASS  $name ($((SECONDS-start))s)"); else results+=("FAIL  $name ($((SECONDS-start))s)"); failed=1; fi
}

[ "$(id -u)" = 0 ] || echo "warning: not root: the end-to-end tests cannot run, so make test will fail" >&2
step "install test tools" tests/tools/build.sh test
step "generated files fresh" tests/verify-generated.sh
step "doc links resolve" tests/check-doc-links.sh
step "go vet" go vet ./...
step "gofmt" bash -c 'out=$(gofmt -l $(git ls-files "*.go")); [ -z "$out" ] || { echo "gofmt needed: $out"; exit 1; }'
step "staticcheck" go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
step "unit tests" go test -count=1 ./ipamd/... ./chain/... ./netplan/... ./underlay/... ./rdma/... ./cmd/... ./internal/... ./deploy/...
step "fuzz (short)" env FUZZTIME=10s tests/fuzz.sh
step "end-to-end tests" go test -count=1 -timeout 25m ./tests/...

echo
echo "==================== summary ===================="
printf '%s\n' "${results[@]}"
[ $failed = 0 ] && echo "all checks passed" || echo "SOME CHECKS FAILED"
exit $failed
