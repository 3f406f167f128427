# shellcheck shell=sh
# `docker login` to REGISTRY as REGISTRY_USER with the password read from stdin, unless the node's
# Docker config already holds exactly these credentials for it. With REGISTRY_ROOTS (PEM certificates:
# the roots of a CA no Docker daemon trusts, such as Let's Encrypt's staging), the daemon first trusts
# them for REGISTRY alone (/etc/docker/certs.d/REGISTRY/ca.crt, read on every connection).
# Inputs: NODE, SERVER (the node), REGISTRY, REGISTRY_USER, REGISTRY_ROOTS (empty: the system's trust store).
. ./root-lib.sh
step "reading the registry password from stdin"
password=""
IFS= read -r password || [ -n "$password" ] || fail "no registry password on stdin"
if [ -n "$REGISTRY_ROOTS" ]; then
  step "trusting the roots of $REGISTRY's certificate"
  need_root "to trust the roots of $REGISTRY's certificate in /etc/docker/certs.d"
  trusted="/etc/docker/certs.d/$REGISTRY/ca.crt"
  if ! printf '%s\n' "$REGISTRY_ROOTS" | as_root cmp -s - "$trusted"; then
    as_root mkdir -p "/etc/docker/certs.d/$REGISTRY"
    printf '%s\n' "$REGISTRY_ROOTS" | as_root tee "$trusted.new" >/dev/null
    as_root mv "$trusted.new" "$trusted"
    echo "$NODE trusts the roots of $REGISTRY's certificate" >&2
  fi
fi
step "checking the docker login of $NODE for $REGISTRY"
config="${DOCKER_CONFIG:-$HOME/.docker}/config.json"
# Passed through the environment, not argv: the process list would show it.
SAMARTH_AUTH=$(printf '%s:%s' "$REGISTRY_USER" "$password" | base64 | tr -d '\n')
export SAMARTH_AUTH
if [ -f "$config" ] && awk -v server="\"$REGISTRY\"" '
    index($0, server) { at = NR }
    at && NR == at + 1 && index($0, "\"auth\": \"" ENVIRON["SAMARTH_AUTH"] "\"") { found = 1 }
    END { exit !found }' "$config"; then
  echo "$NODE is already logged in to $REGISTRY" >&2
  exit 0
fi
step "logging in to $REGISTRY"
printf '%s\n' "$password" | docker login --username "$REGISTRY_USER" --password-stdin "$REGISTRY" >/dev/null
echo "$NODE logged in to $REGISTRY" >&2
