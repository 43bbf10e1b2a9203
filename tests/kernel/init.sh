#!/bin/busybox sh
# /init of the kernel tests' VM (tests/kernel/vm.sh puts it into the initramfs): mount the
# kernel's file systems, load the modules vm.sh listed, bring up eth0 on QEMU's user network
# (10.0.2.2 is the machine's loopback), run /underpool/run, report how it ended, power off.
# Lines starting "underpool-vm:" are what the host reads on the console; every step that
# fails says so there, so a VM that cannot boot fails the host's test with the reason.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
exec </dev/null >/dev/console 2>&1
echo "underpool-vm: booted $(uname -r), $(nproc) cpu, uptime $(cut -d' ' -f1 /proc/uptime) s"

while read -r ko; do
  insmod "$ko" || echo "underpool-vm: insmod $ko failed"
done </etc/modules.load

# busybox's shell prefers its own ip applet: iproute2's by its full path
/usr/bin/ip link set lo up
if /usr/bin/ip link set eth0 up && /usr/bin/ip addr add 10.0.2.15/24 dev eth0 \
  && /usr/bin/ip route add default via 10.0.2.2; then
  echo "underpool-vm: eth0 10.0.2.15/24 via 10.0.2.2"
else
  echo "underpool-vm: eth0 not configured: $(/usr/bin/ip -br link 2>&1 | tr '\n' ' ')"
fi

# results go to the second serial port, raw, so kernel messages never land inside them
stty -F /dev/ttyS1 raw -echo 2>/dev/null
if [ -x /underpool/run ]; then
  echo "underpool-vm: running /underpool/run at uptime $(cut -d' ' -f1 /proc/uptime) s"
  /underpool/run
  code=$?
else
  echo "underpool-vm: nothing to run: /underpool/run is missing"
  code=127
fi
echo "underpool-vm: exit $code at uptime $(cut -d' ' -f1 /proc/uptime) s"
sync
poweroff -f
