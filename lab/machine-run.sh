#!/bin/sh
# Runs one lab machine until it powers off: `machine-run.sh CGROUP NSPAWN-ARGUMENTS...`.
#
# It joins the machine's cgroup in every hierarchy first (each machine needs its own: without one,
# nspawn puts every machine in the same /payload), then boots the machine with systemd-nspawn, and
# boots it again each time it reboots. nspawn exits 133 on a reboot and leaves restarting to the host's
# systemd (RestartForceExitStatus=133 in systemd-nspawn@.service); this machine has none, so this
# loop does it. Any other exit (a poweroff, SIGTERM to nspawn, a crash) ends it.
set -u
cgroup=$1
shift
for hierarchy in /sys/fs/cgroup/*/; do
  [ -d "$hierarchy$cgroup" ] && echo $$ >"$hierarchy$cgroup/cgroup.procs"
done
while :; do
  echo "machine-run: booting ($(date -u +%FT%TZ))"
  systemd-nspawn "$@"
  status=$?
  echo "machine-run: nspawn exited $status ($(date -u +%FT%TZ))"
  [ "$status" -eq 133 ] || exit "$status"
done
