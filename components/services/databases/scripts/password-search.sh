# shellcheck shell=sh
# Check that the running Elasticsearch or OpenSearch in CONTAINER accepts the password on stdin for
# its built-in superuser (USER). Elasticsearch's image puts ELASTIC_PASSWORD into the keystore as the
# bootstrap password at every start of a new container, which `elastic` uses for as long as nobody set
# its password through the security API: a rotated password replaces the container and is in force
# once it is healthy. OpenSearch reads OPENSEARCH_INITIAL_ADMIN_PASSWORD only when it creates its
# security index. When the server refuses the password, this fails before Vault publishes it (Vault
# keeps the value the server accepts) and says how to set it, which needs the old one.
# Inputs: CONTAINER, PORT (inside the container), USER, AUTHENTICATE_PATH, RESET (how to set it by
# hand); the password on stdin (one line). curl reads the credentials from a config on its stdin.
step "reading the password from stdin"
IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
case "$password" in
  '' | *[!A-Za-z0-9._-]*) fail "the password on stdin is empty or has characters generated passwords do not have" ;;
esac

step "authenticating $USER with the current password"
printf 'user = "%s:%s"\n' "$USER" "$password" \
  | docker exec -i "$CONTAINER" curl -fsS -o /dev/null -K - "http://127.0.0.1:$PORT$AUTHENTICATE_PATH" \
  || fail "$USER does not accept the current password in container $CONTAINER, so Vault keeps the previous one. $RESET; then run 'pulumi up' again"
echo "$SAMARTH_SCRIPT: $USER accepts the current password"
