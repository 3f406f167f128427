#!/bin/sh
# The entry point of the lab's RabbitMQ image (lab/image-files/rabbitmq.Dockerfile): what the official
# image's does. A rabbitmq* command as root runs as the rabbitmq user, `rabbitmq-server` after giving it
# the data directory. Any other command runs as given. setpriv is util-linux's, by its path: busybox's
# shell runs its own applets before PATH, and busybox's setpriv cannot change the user.
set -eu
case "${1:-}" in
  rabbitmq*)
    if [ "$(id -u)" = 0 ]; then
      if [ "$1" = rabbitmq-server ]; then
        chown -R rabbitmq /var/lib/rabbitmq
      fi
      exec /usr/bin/setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
    fi
    ;;
esac
exec "$@"
