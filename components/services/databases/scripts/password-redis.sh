# shellcheck shell=sh
# Check that the running Redis in CONTAINER requires the password on stdin. Redis reads requirepass
# from its configuration at every start, and that configuration is part of the container's definition:
# a rotated password replaces the container, so the new one is in force once it is healthy. (A
# CONFIG SET on a running server would be undone by the next start; it is not needed.)
# Inputs: CONTAINER; the password on stdin (one line). redis-cli takes it from REDISCLI_AUTH.
step "reading the password from stdin"
IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
case "$password" in
  '' | *[!A-Za-z0-9]*) fail "the password on stdin is empty or not alphanumeric (generated passwords are)" ;;
esac

step "authenticating with the current password"
reply=$(REDISCLI_AUTH="$password" docker exec -e REDISCLI_AUTH "$CONTAINER" redis-cli --no-auth-warning -h 127.0.0.1 ping 2>/dev/null) || true
[ "$reply" = PONG ] || fail "redis in container $CONTAINER does not accept the current password: see 'docker logs $CONTAINER'"
echo "$SAMARTH_SCRIPT: redis accepts the current password"
