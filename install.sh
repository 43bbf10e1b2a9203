#!/usr/bin/env bash
# Installs underpool on a node: the CNI plugins into the CNI bin dir and ipamd as a
# systemd service (when systemd runs). Idempotent; --uninstall removes what it installed.
#
#   install.sh [--prefix DIR] [--cni-bin-dir DIR] [--bin-dir DIR] [--from DIR]
#              [--kubeconfig FILE] [--node-name NAME] [--no-systemd] [--plugins-only]
#              [--uninstall]
#
# --prefix installs under a root other than / (tests use a temporary root). --plugins-only
# installs just the CNI plugins, for nodes whose ipamd runs outside systemd (the DaemonSet's
# init container uses underpool-install from the image instead: it has no shell).
set -euo pipefail

prefix=""
cni_bin_dir=/opt/cni/bin
bin_dir=/usr/local/bin
from=""
kubeconfig=/etc/underpool/kubeconfig
node_name=""
systemd=auto
plugins_only=no
action=install
plugins=(underpool underpool-ipam)

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2%/}; shift 2 ;;
    --cni-bin-dir) cni_bin_dir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --kubeconfig) kubeconfig=$2; shift 2 ;;
    --node-name) node_name=$2; shift 2 ;;
    --no-systemd) systemd=no; shift ;;
    --plugins-only) plugins_only=yes; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "underpool install: $*"; }
warn() { echo "underpool install: WARNING: $*" >&2; }
unit=$prefix/etc/systemd/system/underpool-ipamd.service

systemd_running() {
  [ "$systemd" != no ] && [ -z "$prefix" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

# Prerequisites are reported, not enforced: a node may get multus or RDMA later.
check_prerequisites() {
  local missing=0
  if [ ! -x "$prefix$cni_bin_dir/multus" ] && [ ! -x "$prefix$cni_bin_dir/multus-shim" ]; then
    warn "multus is not in $cni_bin_dir: underpool is meant to be called by multus for NetworkAttachmentDefinitions"; missing=1
  fi
  for d in macvlan ipvlan host-device; do
    [ -x "$prefix$cni_bin_dir/$d" ] || { warn "delegate plugin $d is not in $cni_bin_dir (containernetworking/plugins)"; missing=1; }
  done
  # the kernel is asked directly, in a throw-away netns: modules may be built in or absent
  # from /lib/modules, so only creating a link tells the truth
  local probe=underpool-probe-$$
  if ip netns add "$probe" 2>/dev/null; then
    ip -n "$probe" link add up-parent type veth peer name up-peer 2>/dev/null
    for t in macvlan ipvlan vlan; do
      local extra=""; [ $t = vlan ] && extra="id 10"
      if ip -n "$probe" link add up-$t link up-parent type $t $extra 2>/dev/null; then
        say "kernel link type $t: available"
      else
        warn "kernel link type $t is not available: networks using it cannot run on this node"
      fi
    done
    ip netns del "$probe"
  else
    warn "could not create a network namespace to probe kernel link types"
  fi
  if [ -d /sys/class/infiniband ] && [ -n "$(ls -A /sys/class/infiniband 2>/dev/null)" ]; then
    say "RDMA devices: $(ls /sys/class/infiniband | tr '\n' ' ')"
  else
    say "no RDMA devices on this node (RDMA networks cannot be used here)"
  fi
  # rdma.mode in a network config must match the kernel's RDMA netns mode
  if command -v rdma >/dev/null; then
    local mode
    mode=$(rdma system show 2>/dev/null | sed -n 's/.*netns \([a-z]*\).*/\1/p' | head -1)
    if [ -n "$mode" ]; then
      say "RDMA netns mode: $mode (networks need rdma.mode \"$mode\"; change it with 'rdma system set netns exclusive|shared')"
    else
      say "RDMA netns mode: unknown (the kernel has no RDMA support, or 'rdma system' failed)"
    fi
  else
    warn "the rdma tool (iproute2) is missing: cannot report the RDMA netns mode"
  fi
  return $missing
}

install_files() {
  [ -n "$from" ] || from=$(cd "$(dirname "$0")" && pwd)/bin
  local need=("${plugins[@]}")
  [ $plugins_only = yes ] || need+=(ipamd)
  for b in "${need[@]}"; do
    [ -x "$from/$b" ] || { echo "install.sh: $from/$b not found: run 'make build' or pass --from DIR" >&2; exit 1; }
  done
  mkdir -p "$prefix$cni_bin_dir" "$prefix$bin_dir"
  for p in "${plugins[@]}"; do
    # copy then rename: a runtime calling the plugin mid-install never sees half a file
    install -m 0755 "$from/$p" "$prefix$cni_bin_dir/.$p.new" && mv -f "$prefix$cni_bin_dir/.$p.new" "$prefix$cni_bin_dir/$p"
    say "installed $prefix$cni_bin_dir/$p"
  done
  if [ $plugins_only = yes ]; then
    check_prerequisites || say "some prerequisites are missing (see warnings above)"
    return
  fi
  install -m 0755 "$from/ipamd" "$prefix$bin_dir/.ipamd.new" && mv -f "$prefix$bin_dir/.ipamd.new" "$prefix$bin_dir/ipamd"
  say "installed $prefix$bin_dir/ipamd"
  mkdir -p "$(dirname "$unit")"
  cat > "$unit.new" <<UNIT
[Unit]
Description=underpool ipamd: pod addresses for the underpool CNI plugins
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$bin_dir/ipamd --kubeconfig $kubeconfig --node-name ${node_name:-%H} --socket /run/underpool/ipamd.sock
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
  mv -f "$unit.new" "$unit"
  say "wrote $unit"
  if systemd_running; then
    systemctl daemon-reload
    systemctl enable --now underpool-ipamd.service
    say "ipamd enabled and started (systemctl status underpool-ipamd)"
  else
    say "systemd is not managing this root: start ipamd yourself, e.g."
    say "  $bin_dir/ipamd --kubeconfig $kubeconfig --node-name ${node_name:-\$(hostname)}"
  fi
  check_prerequisites || say "some prerequisites are missing (see warnings above)"
}

uninstall_files() {
  if systemd_running && systemctl list-unit-files underpool-ipamd.service >/dev/null 2>&1; then
    systemctl disable --now underpool-ipamd.service || true
  fi
  for f in "${plugins[@]/#/$prefix$cni_bin_dir/}" "$prefix$bin_dir/ipamd" "$unit"; do
    if [ -e "$f" ]; then rm -f "$f"; say "removed $f"; fi
  done
  systemd_running && systemctl daemon-reload || true
  say "uninstalled"
}

case $action in
  install) install_files ;;
  uninstall) uninstall_files ;;
esac
