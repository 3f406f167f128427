# shellcheck shell=sh
# Make the running Postgres in CONTAINER accept the password on stdin for ROLE (idempotent), then
# prove it with a password login. The official image reads POSTGRES_PASSWORD only when it creates the
# data directory, so a rotated password reaches an existing database only this way.
# Inputs: CONTAINER, ROLE, DATABASE; the password on stdin (one line). The password is never an
# argument, never printed, and kept out of Postgres' log: the statement runs with statement logging
# off and psql's output withheld (an error message could quote it).
step "reading the password from stdin"
IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
case "$password" in
  '' | *[!A-Za-z0-9]*) fail "the password on stdin is empty or not alphanumeric (generated passwords are)" ;;
esac

step "connecting to database $DATABASE as $ROLE in container $CONTAINER"
docker exec "$CONTAINER" psql -X -q -v ON_ERROR_STOP=1 -U "$ROLE" -d "$DATABASE" -c 'SELECT 1' >/dev/null \
  || fail "cannot connect to $DATABASE as $ROLE in container $CONTAINER over its local socket: see 'docker logs $CONTAINER'"

step "setting the password of role $ROLE"
printf "SET log_min_error_statement = panic;\nSET log_statement = 'none';\nALTER ROLE \"%s\" WITH PASSWORD '%s';\n" "$ROLE" "$password" \
  | docker exec -i "$CONTAINER" psql -X -q -v ON_ERROR_STOP=1 -U "$ROLE" -d "$DATABASE" >/dev/null 2>&1 \
  || fail "ALTER ROLE $ROLE failed in container $CONTAINER (its output is withheld: it could quote the password); investigate with 'docker exec -it $CONTAINER psql -U $ROLE -d $DATABASE'"

# Loopback is 'trust' in the image's pg_hba.conf; its own network address asks for the password.
step "logging in as $ROLE with the new password over the container's network address"
PGPASSWORD="$password" docker exec -e PGPASSWORD "$CONTAINER" \
  sh -c 'psql -X -q -h "$(hostname -i | cut -d " " -f 1)" -U "$1" -d "$2" -c "SELECT 1"' verify "$ROLE" "$DATABASE" >/dev/null \
  || fail "role $ROLE does not accept the new password in container $CONTAINER after ALTER ROLE"
echo "$SAMARTH_SCRIPT: role $ROLE accepts the current password"
