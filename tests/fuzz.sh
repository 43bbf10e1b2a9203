#!/usr/bin/env bash
# Runs every Go fuzz target of the packages that parse hostile input (network configs,
# annotations, socket requests, pool specs), each for FUZZTIME (default 10s): `make test`
# runs it short, `make fuzz` long (FUZZTIME=5m). A crasher is written under the
# package's testdata/fuzz/<Target>/: commit it, it then runs as a regression case in every
# `go test`.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOFLAGS=-mod=mod
fuzztime=${FUZZTIME:-10s}
pkgs=(./chain ./netplan ./api/v1 ./rpc ./core/allocator ./core/nadgen)
failed=0
logs=$(mktemp -d)
for pkg in "${pkgs[@]}"; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    echo "==> $pkg $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$logs/${target}.log" 2>&1; then
      tail -20 "$logs/${target}.log"
      echo "FAIL  $pkg $target: the crasher is under $pkg/testdata/fuzz/$target/"
      failed=1
    else
      tail -1 "$logs/${target}.log"
    fi
  done
done
exit $failed
