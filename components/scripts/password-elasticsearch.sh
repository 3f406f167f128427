# shellcheck shell=sh
# Check that the running Elasticsearch in CONTAINER accepts the password on stdin for the built-in
# `elastic` user. The image puts ELASTIC_PASSWORD into the keystore as bootstrap.password at every
# start of a new container, and `elastic` authenticates with the bootstrap password for as long as
# nobody set its password through the security API; a rotated ELASTIC_PASSWORD replaces the container,
# so the new password is in force once it is healthy. If someone did set it, say how to hand it back.
# Inputs: CONTAINER, PORT (inside the container); the password on stdin (one line). curl reads its
# credentials from a config on stdin, never from its arguments.
step "reading the password from stdin"
IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
case "$password" in
  '' | *[!A-Za-z0-9]*) fail "the password on stdin is empty or not alphanumeric (generated passwords are)" ;;
esac

step "authenticating elastic with the current password"
printf 'user = "elastic:%s"\n' "$password" \
  | docker exec -i "$CONTAINER" curl -fsS -o /dev/null -K - "http://127.0.0.1:$PORT/_security/_authenticate" \
  || fail "elastic does not accept the current password in container $CONTAINER: its password was set through the security API, which takes precedence over ELASTIC_PASSWORD. Reset it to the stack's: 'docker exec -it $CONTAINER bin/elasticsearch-reset-password -u elastic -i', entering the value of kv/samarth/<service> from Vault, then run 'pulumi up' again"
echo "$SAMARTH_SCRIPT: elastic accepts the current password"
