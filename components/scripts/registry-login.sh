# shellcheck shell=sh
# `docker login` to REGISTRY with the username and password read from stdin (one per line), unless the
# node's Docker config already holds exactly these credentials for it. Inputs: NODE, REGISTRY.
step "reading the registry credentials from stdin"
username=""; password=""
IFS= read -r username || true
IFS= read -r password || [ -n "$password" ] || fail "no registry password on stdin"
[ -n "$username" ] || fail "no registry username on stdin"
step "checking the docker login of $NODE for $REGISTRY"
config="${DOCKER_CONFIG:-$HOME/.docker}/config.json"
# Passed through the environment, not argv: the process list would show it.
SAMARTH_AUTH=$(printf '%s:%s' "$username" "$password" | base64 | tr -d '\n')
export SAMARTH_AUTH
if [ -f "$config" ] && awk -v server="\"$REGISTRY\"" '
    index($0, server) { at = NR }
    at && NR == at + 1 && index($0, "\"auth\": \"" ENVIRON["SAMARTH_AUTH"] "\"") { found = 1 }
    END { exit !found }' "$config"; then
  echo "$NODE is already logged in to $REGISTRY" >&2
  exit 0
fi
step "logging in to $REGISTRY"
printf '%s\n' "$password" | docker login --username "$username" --password-stdin "$REGISTRY" >/dev/null
echo "$NODE logged in to $REGISTRY" >&2
