#!/usr/bin/env bash
# The host side of the kernel tests (tests/kernel): a Debian kernel with what this machine's
# kernel lacks (ipvlan, 802.1q, dummy, bonding, soft-RoCE) booted under QEMU.
#
#   vm.sh fetch              qemu, kmod and cpio on the machine (apt-get, only when missing);
#                            the kernel, its modules, busybox-static and iproute2 from Debian's
#                            packages into the git-ignored cache (apt-get download + dpkg-deb
#                            -x: the machine's /boot and /lib/modules stay untouched)
#   vm.sh initrd OUT DIR...  an initramfs (newc cpio, uncompressed: TCG would spend seconds
#                            inflating it) of busybox, the modules in MODULES below and their
#                            dependencies, ip and rdma, init.sh as /init, then each DIR's
#                            files on top; every dynamically linked program gets its libraries
#   vm.sh kernel             prints the path of the cached kernel image
#
# The cache is $UNDERPOOL_CACHE/vm or <repo>/.cache/vm. `fetch` is a no-op once it is filled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${UNDERPOOL_CACHE:-$root/.cache}/vm

# What the guest loads at boot, in this order; modprobe -D adds each one's dependencies.
# virtio_net and its failover pair reach the machine (QEMU user networking); xfrm_user and
# nfnetlink because a netlink handle (vishvananda/netlink) opens a socket of each family it
# knows and fails without them ("protocol not supported"); the rest are the link types and
# devices the tests make.
MODULES=(virtio_pci failover net_failover virtio_net xfrm_user nfnetlink
  veth dummy macvlan ipvlan 8021q bonding
  crc32_generic rdma_rxe ib_uverbs rdma_ucm)

say() { echo "==> [vm] $*" >&2; }
die() { echo "vm.sh: $*" >&2; exit 1; }

apt_updated=
apt_install() {
  [ $# = 0 ] && return
  say "installing Debian packages: $*"
  [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

host_tools() {
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v modprobe >/dev/null || need+=(kmod)
  command -v depmod >/dev/null || need+=(kmod)
  command -v cpio >/dev/null || need+=(cpio)
  # shellcheck disable=SC2046
  apt_install $(printf '%s\n' "${need[@]}" | sort -u)
}

# download <package>: the .deb into $cache/debs (apt-get download needs no root and leaves the
# machine's package state alone).
download() {
  mkdir -p "$cache/debs"
  (cd "$cache/debs" && apt-get download -qq "$1" >/dev/null 2>&1) || {
    [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=1; }
    (cd "$cache/debs" && apt-get download -qq "$1" >/dev/null) || die "apt-get download $1 failed"
  }
  ls -t "$cache/debs/$1"_*.deb | head -1
}

fetch() {
  host_tools
  [ -s "$cache/kernel.version" ] && [ -x "$cache/busybox" ] && [ -x "$cache/iproute2/bin/ip" ] && return
  say "fetching the Debian kernel, busybox-static and iproute2 into $cache (first time only)"
  [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  # linux-image-amd64 is a metapackage: the kernel is the package it depends on
  local image
  image=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  [ -n "$image" ] || die "apt-cache depends linux-image-amd64 names no linux-image-<version> package"
  local ver=${image#linux-image-}
  rm -rf "$cache/kernel" "$cache/iproute2" "$cache/bb"
  dpkg-deb -x "$(download "$image")" "$cache/kernel"
  [ -f "$cache/kernel/boot/vmlinuz-$ver" ] || die "$image holds no boot/vmlinuz-$ver"
  # the package's postinst would run depmod; we run it on the unpacked tree
  depmod -b "$cache/kernel" "$ver"
  dpkg-deb -x "$(download busybox-static)" "$cache/bb"
  cp "$cache/bb/bin/busybox" "$cache/busybox"
  dpkg-deb -x "$(download iproute2)" "$cache/iproute2"
  rm -rf "$cache/debs" "$cache/bb"  # unpacked: the packages are no longer needed
  echo "$ver" > "$cache/kernel.version"
  say "kernel $ver ready"
}

kernel_version() {
  [ -s "$cache/kernel.version" ] || die "no kernel in $cache: run $0 fetch"
  cat "$cache/kernel.version"
}

# copy_libs <rootfs> <elf>: the shared libraries <elf> needs, at the paths the loader looks
# them up (ldd resolves them against this Debian machine's own, same release as the packages).
copy_libs() {
  local fs=$1 elf=$2 lib
  ldd "$elf" >/dev/null 2>&1 || return 0  # static, or a script
  for lib in $(ldd "$elf" | grep -oE '/[^ ]+' | sort -u); do
    [ -e "$fs$lib" ] && continue
    [ -f "$lib" ] || die "$elf needs $lib, which is not on this machine"
    mkdir -p "$fs$(dirname "$lib")"
    cp -L "$lib" "$fs$lib"
  done
}

initrd() {
  local out=$1; shift
  local ver; ver=$(kernel_version)
  local fs; fs=$(mktemp -d)
  trap 'rm -rf "$fs"' RETURN
  mkdir -p "$fs"/{bin,sbin,usr/bin,usr/sbin,lib,proc,sys,dev,run,tmp,etc,var/lib,var/log,root}
  cp "$cache/busybox" "$fs/bin/busybox"
  cp "$here/init.sh" "$fs/init"
  chmod 755 "$fs/init"
  # iproute2's own ip and rdma: busybox's ip applet knows no netns, ipvlan or vlan options
  cp "$cache/iproute2/bin/ip" "$fs/usr/bin/ip"
  cp "$cache/iproute2/usr/bin/rdma" "$fs/usr/bin/rdma"
  # the modules with their dependencies, in load order (modprobe -D prints "insmod <path>")
  local mdir="lib/modules/$ver" m ko
  mkdir -p "$fs/$mdir"
  : > "$fs/etc/modules.load"
  for m in "${MODULES[@]}"; do
    for ko in $(modprobe -d "$cache/kernel" -S "$ver" -D "$m" | awk '$1 == "insmod" {print $2}'); do
      ko=${ko#"$cache/kernel/"}
      [ -e "$fs/$ko" ] && continue
      mkdir -p "$fs/$(dirname "$ko")"
      cp "$cache/kernel/$ko" "$fs/$ko"
      echo "/$ko" >> "$fs/etc/modules.load"
    done
  done
  cp "$cache/kernel/$mdir"/modules.* "$fs/$mdir/"
  local d
  for d in "$@"; do cp -a "$d/." "$fs/"; done
  local elf
  while IFS= read -r elf; do copy_libs "$fs" "$elf"; done < <(find "$fs" -type f -perm -u+x ! -name '*.ko')
  (cd "$fs" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$out"
}

case ${1:-} in
  fetch) fetch ;;
  initrd) [ $# -ge 2 ] || die "usage: $0 initrd OUT [DIR...]"; shift; initrd "$@" ;;
  kernel) echo "$cache/kernel/boot/vmlinuz-$(kernel_version)" ;;
  *) die "usage: $0 fetch | initrd OUT [DIR...] | kernel" ;;
esac
