# shellcheck shell=sh
# PostHog (posthog-deploy) at REF: compose-lib.sh's install, then validate, check the checkout's services,
# install web's server script executable, create Kafka's volume, pull, apply the database password, start
# and wait for health; on a rotation (COMPOSE_SECRETS_ONLY) only the last two.
# Inputs: compose-lib.sh's, SERVICES (the long-running services: started and waited for), ONE_SHOTS (the
# others: never started here), SERVER_SCRIPT (the executable copy of docker-server web mounts),
# KAFKA_VOLUME, WAIT_SECONDS (up --wait's timeout), SETTLE_SECONDS and SETTLE_WINDOWS (the restart watch).
. ./compose-lib.sh

# Fails with $1, the long-running services that are not running (or running but not healthy), and where to look.
posthog_not_ready() {
  # shellcheck disable=SC2086 # one word per service
  not_ready=$(dc ps --all --format '{{.Service}} {{.State}} {{.Health}}' $SERVICES \
    | awk '$2 != "running" || ($3 != "" && $3 != "healthy") { printf "%s%s (%s%s)", sep, $1, $2, ($3 == "" ? "" : ", " $3); sep = "; " }')
  service=${not_ready%% *}
  fail "$1: ${not_ready:-no service reported}; see 'docker compose logs --tail 200 ${service:-web}' and 'docker compose ps --all' in $DIRECTORY"
}

# One line per container of the long-running services: service, restart count, state.
posthog_restarts() {
  # shellcheck disable=SC2086 # one word per service
  ids=$(dc ps --quiet $SERVICES)
  [ -n "$ids" ] || return 0
  # shellcheck disable=SC2086 # one word per container id
  docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.RestartCount}} {{.State.Status}}' $ids
}

compose_prepare
if [ "$COMPOSE_SECRETS_ONLY" = false ]; then
  step "validating the compose configuration (needs Docker Compose 2.24.4 or newer)"
  dc config --quiet
  step "checking the services of posthog-deploy at $REF"
  # shellcheck disable=SC2086 # one word per service
  known=$(printf '%s\n' $SERVICES $ONE_SHOTS | sort | tr '\n' ' ')
  found=$(dc config --services | sort | tr '\n' ' ')
  [ "$found" = "$known" ] || fail "posthog-deploy at $REF has the services ${found}where the program knows ${known}: review POSTHOG_SERVICES and POSTHOG_ONE_SHOTS (components/observability.py) for this ref"
  step "installing docker-server as $SERVER_SCRIPT with mode 0755 (compose/start runs it directly)"
  [ -f docker-server ] || fail "docker-server is missing from $REPOSITORY at $REF"
  install -m 0755 docker-server "$SERVER_SCRIPT"
  [ -x "$SERVER_SCRIPT" ] || fail "$DIRECTORY/$SERVER_SCRIPT is not executable although installed with mode 0755: is $DIRECTORY on a filesystem mounted noexec? PostHog's web runs it directly"
  step "creating Kafka's volume $KAFKA_VOLUME"
  docker volume create "$KAFKA_VOLUME" >/dev/null
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
# Containers whose .env values changed are recreated. One-shots are not named: `--wait` fails on a
# container that exits, even with 0.
step "starting PostHog and waiting up to ${WAIT_SECONDS}s for every service to run and web to accept connections"
# shellcheck disable=SC2086 # one word per service
dc up --detach --remove-orphans --wait --wait-timeout "$WAIT_SECONDS" $SERVICES \
  || posthog_not_ready "PostHog did not become healthy within ${WAIT_SECONDS}s"
# A service without a healthcheck counts as up while it is running, between two crashes too. Docker
# waits at most a minute between restarts (SETTLE_SECONDS is longer): a window in which no container
# restarted or stopped means they have settled (one that crashed while web migrated may restart once).
step "watching PostHog's containers for ${SETTLE_SECONDS}s without a restart (at most $SETTLE_WINDOWS times)"
window=0
settled=$(posthog_restarts)
while :; do
  sleep "$SETTLE_SECONDS"
  latest=$(posthog_restarts)
  restarted=$(printf '%s\n' "$latest" | grep -v -x -F "$settled" | awk '{ printf "%s%s", sep, $1; sep = " " }')
  [ -n "$restarted" ] || break
  window=$((window + 1))
  [ "$window" -lt "$SETTLE_WINDOWS" ] || fail "PostHog's $restarted restarted or stopped in each of $SETTLE_WINDOWS windows of ${SETTLE_SECONDS}s after the wait (a crash loop): see 'docker compose logs --tail 200 ${restarted%% *}' and 'docker compose ps --all' in $DIRECTORY"
  settled=$latest
done
compose_record
