#!/usr/bin/env bash
# Builds the real components the tests (tests/), the demo and the bench (hack/demo,
# hack/bench, hack/scale) run against, from the Go module proxy, into a git-ignored cache. Each tool is built once; later runs reuse the binary.
#   kube-apiserver, kube-controller-manager, kube-scheduler v1.34.4, etcd v3.6.6 (the local control plane)
#   containernetworking plugins v1.9.1 (macvlan, ipvlan, host-device, host-local, loopback, bridge, ...)
#   cnitool v1.3.1, multus thin v4.2.2, whereabouts v0.9.2 (peers and drivers)
#   kubectl v1.34.4 and helm v3.22.0 (the deploy tests render and dry-run kustomize and the chart)
# Targets: test (everything the test suites use), demo (only what `make demo` runs), and
# parts (apt, controlplane, cni, whereabouts, helm).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${UNDERPOOL_CACHE:-$root/.cache}
bin=$cache/bin
mods=$cache/modules
mkdir -p "$bin" "$mods"
export GOFLAGS=-mod=mod

K8S_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.6
PLUGINS_VERSION=v1.9.1
CNI_VERSION=v1.3.1
MULTUS_VERSION=v4.2.2
WHEREABOUTS_VERSION=v0.9.2
HELM_VERSION=v3.22.0

say() { echo "==> [tools] $*" >&2; }

# wrapper <dir> <module-line...>: a throw-away module that requires the given versions.
wrapper() {
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && { [ -f go.mod ] || go mod init "underpool.tools/$(basename "$dir")" >/dev/null 2>&1; })
}

# The control-plane binaries and kubectl share one wrapper module: kube-apiserver first
# (about 3 minutes cold, 2 GiB RAM), then kube-controller-manager and kube-scheduler
# (under a minute more). build_kube [command...] builds the given ones, all four by default.
build_kube() {
  local c missing=()
  [ $# -gt 0 ] || set -- kube-apiserver kube-controller-manager kube-scheduler kubectl
  for c in "$@"; do [ -x "$bin/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} = 0 ] && return
  say "building ${missing[*]} $K8S_VERSION from the Go module proxy (first time only: about 4 minutes, 2 GiB RAM)"
  local d=$mods/kube-apiserver; wrapper "$d"
  local gomod
  gomod=$(cd "$d" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module underpool.tools/kube-apiserver"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo "replace ("
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$d/go.mod"
  printf 'package tools\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' > "$d/tools.go"
  (cd "$d" && go mod tidy >/dev/null 2>&1 || true)
  for c in "${missing[@]}"; do (cd "$d" && go build -o "$bin/$c" "k8s.io/kubernetes/cmd/$c"); done
}

# build_pkg <name> <module@version> <package> <binary...>
build_go() {
  local name=$1 modver=$2 pkg=$3 out=$4
  [ -x "$bin/$out" ] && return
  say "building $out from $modver"
  local d=$mods/$name; wrapper "$d"
  (cd "$d" && go mod edit -require="$modver" && printf 'package tools\nimport _ "%s"\n' "$pkg" > tools.go \
     && go mod tidy >/dev/null 2>&1 || true; cd "$d" && go build -o "$bin/$out" "$pkg")
}

build_etcd() { build_go etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3 etcd; }

# build_plugins [plugin...] builds the given containernetworking plugins, all the tests
# use by default.
build_plugins() {
  local p
  [ $# -gt 0 ] || set -- main/macvlan main/ipvlan main/host-device main/bridge main/loopback main/vlan ipam/host-local ipam/static meta/tuning
  for p in "$@"; do
    build_go cni-plugins "github.com/containernetworking/plugins@$PLUGINS_VERSION" \
      "github.com/containernetworking/plugins/plugins/$p" "$(basename $p)"
  done
}

build_helm() { build_go helm "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm helm; }
build_cnitool() { build_go cnitool "github.com/containernetworking/cni@$CNI_VERSION" github.com/containernetworking/cni/cnitool cnitool; }
build_multus() { build_go multus "gopkg.in/k8snetworkplumbingwg/multus-cni.v4@$MULTUS_VERSION" gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus multus; }
build_whereabouts() {
  build_go whereabouts "github.com/k8snetworkplumbingwg/whereabouts@$WHEREABOUTS_VERSION" github.com/k8snetworkplumbingwg/whereabouts/cmd whereabouts
  # its CRDs ship inside the module; keep a copy next to the binary for tests/cli and hack/bench
  if [ ! -d "$cache/whereabouts-crds" ]; then
    local src; src=$(cd "$mods/whereabouts" && go list -m -f '{{.Dir}}' github.com/k8snetworkplumbingwg/whereabouts)
    mkdir -p "$cache/whereabouts-crds" && cp "$src"/doc/crds/*.yaml "$cache/whereabouts-crds/" && chmod -R u+w "$cache/whereabouts-crds"
  fi
}

# apt_deps [command...] installs the Debian packages of the missing commands (ping,
# iptables and tcpdump by default).
apt_deps() {
  local c need=()
  [ $# -gt 0 ] || set -- ping iptables tcpdump
  for c in "$@"; do
    command -v "$c" >/dev/null && continue
    case $c in ping) need+=(iputils-ping) ;; *) need+=("$c") ;; esac
  done
  if [ ${#need[@]} -gt 0 ]; then
    say "installing Debian packages: ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# The demo's peers, exactly what hack/demo starts (its EnsureTools list): the control
# plane, multus thin, macvlan (the NAD's delegate) and loopback (the pods' lo). No
# whereabouts, helm, kubectl or other plugins: a first `make demo` waits for these only.
DEMO_TOOLS=(etcd kube-apiserver kube-controller-manager kube-scheduler multus macvlan loopback)
# DEMO_FIRST_BUILD is how long building all of them takes the first time: 8m20s measured
# on 2 shared cores, Go build cache empty and module cache warm (13 CPU-minutes:
# kube-apiserver 4.5 minutes, kube-controller-manager 1, multus 2, etcd 0.5, the plugins
# and kube-scheduler seconds); downloading the modules adds what the network takes.
DEMO_FIRST_BUILD="about 8 minutes on 2 cores"

# demo_plan says up front what the demo still lacks and how long building it takes.
demo_plan() {
  local t missing=()
  for t in "${DEMO_TOOLS[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
  if [ ${#missing[@]} = 0 ]; then
    say "the demo's tools are built (${DEMO_TOOLS[*]})"
    return
  fi
  say "the demo needs ${missing[*]}: building them once into $bin"
  say "a first build of all the demo's tools takes $DEMO_FIRST_BUILD, most of it kube-apiserver; later runs reuse them"
}

build_demo() {
  demo_plan
  apt_deps ping
  build_plugins main/macvlan main/loopback
  build_multus
  build_etcd
  build_kube kube-apiserver kube-controller-manager kube-scheduler
}

what=${1:-all}
case $what in
  apt) apt_deps ;;
  controlplane) build_etcd; build_kube ;;
  cni) build_plugins; build_cnitool; build_multus ;;
  whereabouts) build_whereabouts ;;
  helm) build_helm ;;
  # whereabouts too: tests/cli imports from its CRDs (kubectl underpool import whereabouts)
  demo) build_demo ;;
  test) apt_deps; build_plugins; build_cnitool; build_multus; build_etcd; build_whereabouts; build_kube; build_helm ;;
  all) apt_deps; build_plugins; build_cnitool; build_etcd; build_multus; build_whereabouts; build_kube; build_helm ;;
  *) echo "usage: $0 [all|test|demo|apt|controlplane|cni|whereabouts|helm]" >&2; exit 2 ;;
esac
say "tools ready in $bin"
