# shellcheck shell=sh
# `docker login` to REGISTRY as REGISTRY_USER with the password read from stdin, unless the node's
# Docker config already holds exactly these credentials for it. Inputs: NODE, REGISTRY, REGISTRY_USER.
step "reading the registry password from stdin"
password=""
IFS= read -r password || [ -n "$password" ] || fail "no registry password on stdin"
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
