# shellcheck shell=sh
# Report Docker's version, memory and CPUs as JSON; fail clearly when Docker is unusable or the machine
# is smaller than servers.<name> declares (capacity planning relied on that figure).
# Inputs: SERVER, DECLARED_MIB, MINIMUM_MIB (what the machine must report), DECLARED_CPUS.
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
printf '{"dockerVersion":"%s","memoryMib":%s,"cpus":%s}\n' "$version" "$memory_mib" "$cpus"
