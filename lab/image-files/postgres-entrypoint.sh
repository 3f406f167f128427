#!/bin/sh
# The entry point of the lab's Postgres images (lab/image-files/postgres.Dockerfile, services.Dockerfile):
# what the official image's docker-entrypoint.sh does that the program and its scripts rely on.
# `postgres [OPTION...]`, as root: on an empty PGDATA, initdb with POSTGRES_USER (default postgres) as the
# superuser, POSTGRES_PASSWORD as its password (required unless POSTGRES_HOST_AUTH_METHOD is trust),
# POSTGRES_INITDB_ARGS, local connections trusted and every other by POSTGRES_HOST_AUTH_METHOD (default
# scram-sha-256), and POSTGRES_DB (default POSTGRES_USER) created; then the server, as the postgres user,
# as PID 1 (the backup agent checks that), listening on every address. Any other command runs as given.
set -eu
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o postgres -g postgres -m 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo "Error: Database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  password_file=
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    chown postgres "$password_file"
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS holds options, split as the official image splits them
  as_postgres initdb --username="$POSTGRES_USER" ${password_file:+"--pwfile=$password_file"} --auth-local=trust \
    --auth-host="$POSTGRES_HOST_AUTH_METHOD" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  rm -f "$password_file"
  printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$POSTGRES_DB" "$POSTGRES_USER" \
      | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
