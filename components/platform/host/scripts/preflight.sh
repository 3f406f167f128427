# shellcheck shell=sh
# Report Docker's version, memory and CPUs as JSON; fail clearly when Docker is unusable or the machine
# is smaller than servers.<name> declares (capacity planning relied on that figure).
# Warns (stderr, not a failure) when the filesystem of Docker's data root is more than WARN_PERCENT full.
# Inputs: SERVER, DECLARED_MIB, MINIMUM_MIB (what the machine must report), DECLARED_CPUS, WARN_PERCENT.
step "looking for docker"
command -v docker >/dev/null 2>&1 || fail "docker is not installed on $SERVER; install Docker Engine (docker.io or docker-ce) first"
step "asking the docker daemon for its version"
version=$(docker version --format '{{.Server.Version}}' 2>/dev/null) \
  || fail "docker is installed on $SERVER but its daemon does not answer user $(id -un): is dockerd running and is the user in the docker group?"
step "measuring memory and CPUs"
memory_mib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
cpus=$(nproc)
[ "$memory_mib" -ge "$MINIMUM_MIB" ] \
  || fail "$SERVER has $memory_mib MiB of memory but config servers.$SERVER.memoryMib declares $DECLARED_MIB"
[ "$cpus" -ge "$DECLARED_CPUS" ] \
  || fail "$SERVER has $cpus CPUs but config servers.$SERVER.cpus declares $DECLARED_CPUS"
step "measuring the filesystem of Docker's data root"
data_root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null) || fail "docker info failed on $SERVER"
used_percent=$(df -P "$data_root" | awk 'NR == 2 { sub(/%/, "", $5); print $5 }')
case "$used_percent" in
  '' | *[!0-9]*) fail "could not read the use of the filesystem of $data_root on $SERVER" ;;
esac
if [ "$used_percent" -gt "$WARN_PERCENT" ]; then
  echo "warning: the filesystem of Docker's data root $data_root on $SERVER is $used_percent% full (logs.dataRootWarnPercent is $WARN_PERCENT): a full disk stops Vault and the databases; free space or grow it" >&2
fi
printf '{"dockerVersion":"%s","memoryMib":%s,"cpus":%s,"dataRoot":"%s","dataRootUsedPercent":%s}\n' \
  "$version" "$memory_mib" "$cpus" "$data_root" "$used_percent"
