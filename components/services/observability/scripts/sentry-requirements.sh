# shellcheck shell=sh
# The prerequisites getsentry/self-hosted's installer checks (install/_min-requirements.sh and
# install/check-minimum-requirements.sh at the pinned release), checked before it is fetched, so a
# missing one stops the deploy with what to install instead of failing half-way through install.sh.
# Memory and CPUs are planned from the same file (components/services/observability/component.py) and checked by the
# host preflight. Inputs: MIN_DOCKER, MIN_COMPOSE, MIN_BASH.

# True when version $1 is at least $2 (dotted numbers; a leading "v" and any suffix are ignored).
at_least() {
  have=$(printf '%s' "$1" | sed 's/^v//; s/[^0-9.].*$//')
  [ "$(printf '%s\n%s\n' "$2" "$have" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1)" = "$2" ]
}

step "checking the Docker Engine version"
docker_version=$(docker version --format '{{.Server.Version}}' 2>/dev/null) \
  || fail "the docker daemon does not answer; Sentry's installer needs Docker Engine $MIN_DOCKER or newer"
at_least "$docker_version" "$MIN_DOCKER" \
  || fail "Docker Engine is $docker_version; Sentry's installer needs $MIN_DOCKER or newer"

step "checking the Docker Compose plugin version"
compose_version=$(docker compose version --short 2>/dev/null) \
  || fail "the docker compose plugin is not installed; Sentry's installer needs Docker Compose $MIN_COMPOSE or newer (docker-compose-plugin from Docker's repository)"
at_least "$compose_version" "$MIN_COMPOSE" \
  || fail "Docker Compose is $compose_version; Sentry's installer needs $MIN_COMPOSE or newer: upgrade docker-compose-plugin"

step "checking bash"
command -v bash >/dev/null 2>&1 || fail "bash is not installed; Sentry's installer needs bash $MIN_BASH or newer"
# shellcheck disable=SC2016 # expanded by bash, not here
bash_version=$(bash -c 'printf "%s" "$BASH_VERSION"')
at_least "$bash_version" "$MIN_BASH" || fail "bash is $bash_version; Sentry's installer needs $MIN_BASH or newer"

step "checking for SSE 4.2 (ClickHouse needs it on x86-64)"
if [ "$(uname -m)" = x86_64 ] && ! grep -q 'Common KVM processor' /proc/cpuinfo && ! grep -q sse4_2 /proc/cpuinfo; then
  fail "this CPU does not report SSE 4.2, which Sentry's ClickHouse needs (getsentry/self-hosted#340)"
fi
echo "sentry: Docker $docker_version, Docker Compose $compose_version and bash $bash_version meet the installer's minimums"
