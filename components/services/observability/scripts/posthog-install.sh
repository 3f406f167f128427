# shellcheck shell=sh
# PostHog (posthog-deploy) at REF: compose-lib.sh's install, then validate, pull, apply the database
# password and start; on a rotation (COMPOSE_SECRETS_ONLY) only the last two.
# Inputs: compose-lib.sh's.
. ./compose-lib.sh
compose_prepare
if [ "$COMPOSE_SECRETS_ONLY" = false ]; then
  step "validating the compose configuration (needs Docker Compose 2.24.4 or newer)"
  dc config --quiet
  step "pulling the pinned PostHog images"
  dc pull --quiet
fi
# posthog-deploy's `db` (postgres, `-p 6432`, role and database `posthog` from sample.env) reads
# POSTGRES_PASSWORD only when it creates its data: the role gets the current one before anything that
# reads DATABASE_URL restarts. Over the local socket (trusted in the image); statement logging off.
step "starting PostHog's database"
dc up --detach db
tries=0
until dc exec -T db pg_isready -q -p 6432 -U posthog >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || fail "PostHog's database did not become ready within 2 minutes: see 'docker compose logs db' in $DIRECTORY"
  sleep 2
done
step "setting the password of PostHog's database role posthog"
printf "SET log_min_error_statement = panic;\nSET log_statement = 'none';\nALTER ROLE posthog WITH PASSWORD '%s';\n" "$POSTGRES_PASSWORD" \
  | dc exec -T db psql -X -q -v ON_ERROR_STOP=1 -p 6432 -U posthog -d posthog >/dev/null 2>&1 \
  || fail "ALTER ROLE posthog failed in PostHog's database (its output is withheld: it could quote the password)"
step "starting PostHog (containers whose .env values changed are recreated)"
dc up --detach --remove-orphans
compose_record
