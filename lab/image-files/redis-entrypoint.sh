#!/bin/sh
# The entry point of the lab's Redis images (lab/image-files/redis.Dockerfile, services.Dockerfile): what
# the official image's does. Options or a `.conf` file as the first argument mean `redis-server` with them;
# `redis-server` as root gives the working directory (/data) to the redis user, then runs as that user
# with a private umask. Any other command runs as given.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ] && [ "$(umask)" = 0022 ]; then
  umask 0077
fi
exec "$@"
