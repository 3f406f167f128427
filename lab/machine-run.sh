#!/bin/sh
# Runs one lab machine until it powers off: `machine-run.sh CGROUP NETNS NSPAWN-ARGUMENTS...`.
#
# It joins the machine's cgroup in every hierarchy first (each machine needs its own: without one,
# nspawn puts every machine in the same /payload), then boots the machine with systemd-nspawn, and
# boots it again each time it reboots. nspawn exits 133 on a reboot and leaves restarting to the host's
# systemd (RestartForceExitStatus=133 in systemd-nspawn@.service); this machine has none, so this
# loop does it. Any other exit (a poweroff, SIGTERM to nspawn, a crash) ends it.
#
# The machine's network namespace (NETNS, its NIC) outlives its processes, and with it the packet filter
# a previous boot left; a server boots with none, so every boot starts from empty tables.
set -u
cgroup=$1
netns=$2
shift 2

reset_packet_filter() {
  for tool in iptables ip6tables; do
    for table in filter nat mangle raw; do
      nsenter --net="$netns" "$tool" -w -t "$table" -F 2>/dev/null
      nsenter --net="$netns" "$tool" -w -t "$table" -X 2>/dev/null
    done
    for chain in INPUT FORWARD OUTPUT; do
      nsenter --net="$netns" "$tool" -w -P "$chain" ACCEPT 2>/dev/null
    done
  done
}

for hierarchy in /sys/fs/cgroup/*/; do
  [ -d "$hierarchy$cgroup" ] && echo $$ >"$hierarchy$cgroup/cgroup.procs"
done
while :; do
  reset_packet_filter
  echo "machine-run: booting ($(date -u +%FT%TZ))"
  systemd-nspawn "$@"
  status=$?
  echo "machine-run: nspawn exited $status ($(date -u +%FT%TZ))"
  [ "$status" -eq 133 ] || exit "$status"
done
