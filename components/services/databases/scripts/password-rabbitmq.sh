# shellcheck shell=sh
# Make the running RabbitMQ in CONTAINER accept the password on stdin for USER (idempotent), then prove
# it. The image reads RABBITMQ_DEFAULT_PASS only when it creates the node's database, so a rotated
# password reaches an existing broker only this way. rabbitmqctl reads a password it is not given as
# an argument from stdin; it talks to the node with the Erlang cookie, so the old password is not needed.
# Inputs: CONTAINER, USER; the password on stdin (one line).
step "reading the password from stdin"
IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
case "$password" in
  '' | *[!A-Za-z0-9]*) fail "the password on stdin is empty or not alphanumeric (generated passwords are)" ;;
esac

# The container's healthcheck (rabbitmq-diagnostics ping) passes once the Erlang node answers, before
# the broker has booted and created its default user: on a fresh server this step follows at once.
step "waiting for RabbitMQ in $CONTAINER to finish booting"
docker exec "$CONTAINER" rabbitmqctl --quiet await_startup </dev/null >/dev/null \
  || fail "RabbitMQ in container $CONTAINER did not finish booting: see 'docker logs $CONTAINER'"

step "setting the password of user $USER"
printf '%s\n' "$password" | docker exec -i "$CONTAINER" rabbitmqctl --quiet change_password "$USER" >/dev/null \
  || fail "rabbitmqctl change_password $USER failed in container $CONTAINER: see 'docker logs $CONTAINER'"

step "authenticating $USER with the new password"
printf '%s\n' "$password" | docker exec -i "$CONTAINER" rabbitmqctl --quiet authenticate_user "$USER" >/dev/null \
  || fail "user $USER does not accept the new password in container $CONTAINER"
echo "$SAMARTH_SCRIPT: user $USER accepts the current password"
