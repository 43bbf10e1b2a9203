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

# go test -json through hack/testsummary: failures' output and package lines as they come,
# then the counts and every skip's reason; counts add up across the test steps
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/testsummary" ./hack/testsummary || exit 1
gotest() { set -o pipefail; go test -json "$@" 2>&1 | "$work/testsummary" -counts "$work/counts"; }
step "unit tests" gotest -count=1 ./api/... ./rpc/... ./core/... ./ipamd/... ./controller/... ./simulation/... ./kubectlplugin/... ./chain/... ./netplan/... ./underlay/... ./rdma/... ./cmd/... ./internal/... ./deploy/... ./hack/testsummary/...
step "fuzz (short)" env FUZZTIME=10s tests/fuzz.sh
# Each tests/e2e package starts its own control plane, controller and ipamd: one package
# at a time (-p 1), as when they were one package, so no two control planes share the
# 2 cores. The other suites under tests/ and the programs' tests in hack/ (the scale
# smoke run starts a control plane too) run after them as before, two at a time.
step "end-to-end tests" gotest -count=1 -timeout 25m -p 1 ./tests/e2e/...
step "other test suites" gotest -count=1 -timeout 25m $(go list ./tests/... | grep -v '/tests/e2e') ./hack/bench/ ./hack/scale/

echo
echo "==================== summary ===================="
printf '%s\n' "${results[@]}"
[ $failed = 0 ] && echo "all checks passed" || echo "SOME CHECKS FAILED"
awk '{p+=$1; f+=$2; s+=$3} END {printf "tests: %d passed, %d failed, %d skipped\n", p, f, s}' "$work/counts" 2>/dev/null
exit $failed
