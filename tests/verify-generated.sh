#!/usr/bin/env bash
# Regenerates deepcopy code and CRD manifests into a scratch copy and fails if they differ
# from what is committed: generated files are never edited by hand or left stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$root"
cp -r api "$tmp/api"
go tool controller-gen object:headerFile=/dev/null paths=./api/...
go tool controller-gen crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config="$tmp/crds"
go tool controller-gen rbac:roleName=underpool-ipamd paths=./ipamd/daemon/... output:rbac:artifacts:config="$tmp/rbac/ipamd"
go tool controller-gen rbac:roleName=underpool-controller paths=./controller/... output:rbac:artifacts:config="$tmp/rbac/controller"
status=0
if ! diff -r "$tmp/rbac" deploy/rbac >/dev/null; then
  echo "deploy/rbac is stale: run 'make generate' and commit" >&2; status=1
fi
if ! diff -r "$tmp/crds" deploy/crds >/dev/null; then
  echo "deploy/crds is stale: run 'make generate' and commit" >&2; diff -r "$tmp/crds" deploy/crds | head -20 >&2; status=1
fi
if ! diff -r "$tmp/api" api >/dev/null; then
  echo "api/ generated code is stale: run 'make generate' and commit" >&2
  cp -r "$tmp/api/." api/   # restore what was committed; the scratch run rewrote it in place
  status=1
fi
exit $status
