# shellcheck shell=sh
# The backup agent, installed as /usr/local/sbin/samarth-backup on every server that has something to back
# up (components/services/backups/component.py renders it with the server's targets; backup-install.sh installs it).
#
#   samarth-backup run <target>     one backup of a target (what its systemd timer starts)
#   samarth-backup status           last success per target and its age; exit 1 when one is overdue
#   samarth-backup snapshots [target]   complete runs in the repository, newest last
#   samarth-backup prune            forget by retention, prune, check (the prune timer, daily)
#   samarth-backup init             the installer's: a new password (password.new, offsite_password.new)
#                                   becomes a key of its repository before it replaces the old one;
#                                   each repository is created unless it exists
#   samarth-restore <target> [snapshot] [--replace-live] [--other-cluster]
#                                   (a link to this program) restore a complete run into a fresh volume
#                                   and a scratch container without network, check it, and only with
#                                   --replace-live swap it into the live volume (the old data is kept);
#                                   vault-raft: the operator's token on stdin, --other-cluster to force
#   samarth-backup --offsite snapshots [target], samarth-restore --offsite <target> ...
#                                   the same, from the off-site repository (backups.offsite)
#
# Inputs: SERVER (restic's --host), CONFIG_DIR (root-only: password, repository.env, vault-approle,
# offsite_password), STATE_DIR (cache, status, lock), RESTIC (the binary), RCLONE (the binary restic
# reaches the off-site repository through), TARGETS (lines "name method schedule container detail"),
# KEEP_HOURLY, KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY, OFFSITE_KEEP_* (the off-site retention).
#
# Off-site: after a complete run, `restic copy` sends the target's complete snapshots the off-site
# repository lacks (SAMARTH_OFFSITE_REPOSITORY in repository.env). It is an rclone: repository (rclone
# serve restic, configured by the RCLONE_CONFIG_SAMARTHOFFSITE_* variables) because one restic process
# reads one set of S3 credentials and one sftp.command for both repositories of a copy.
#
# A run stores each of its parts (a dump, a directory) as a snapshot tagged `target=<name>` and
# `run-<time>-<pid>`; only when every part succeeded does it add the tag `complete`. A failed part
# (a dump that exited non-zero, even after restic stored what it had streamed) makes the run forget
# all its snapshots, and a run that died half-way is forgotten by the next one: restores only ever
# use complete runs. This needs nothing newer than restic 0.14 (no --stdin-from-command).

usage() {
  echo "usage: samarth-backup run <target> | status | [--offsite] snapshots [target] | prune | init" >&2
  echo "       samarth-restore [--offsite] <target> [snapshot] [--replace-live] [--other-cluster (vault-raft)]" >&2
  echo "targets on $SERVER:" >&2
  printf '%s\n' "$TARGETS" | awk 'NF { print "  " $1 " (" $2 ", " $3 ")" }' >&2
  SAMARTH_STEP=""
  exit 2
}

repository=primary
if [ "${1:-}" = --offsite ]; then
  repository=offsite
  shift
fi
if [ "${0##*/}" = samarth-restore ]; then
  command=restore
else
  [ "$#" -ge 1 ] || usage
  command=$1
  shift
fi
[ "$(id -u)" -eq 0 ] || fail "run it as root: the repository password and credentials are root-only files in $CONFIG_DIR"
umask 077
mkdir -p "$STATE_DIR/status" "$STATE_DIR/cache"

step "reading the repository settings in $CONFIG_DIR"
[ -r "$CONFIG_DIR/repository.env" ] || fail "$CONFIG_DIR/repository.env is missing: run 'pulumi up' to install the backup agent"
# init installs the password itself, from password.new.
[ -r "$CONFIG_DIR/password" ] || [ "$command" = init ] \
  || fail "$CONFIG_DIR/password is missing: run 'pulumi up' to install the backup agent"
SAMARTH_SFTP_COMMAND=""
SAMARTH_OFFSITE_REPOSITORY=""
set -a
# shellcheck source=/dev/null
. "$CONFIG_DIR/repository.env"
set +a
RESTIC_PASSWORD_FILE="$CONFIG_DIR/password"
RESTIC_CACHE_DIR="$STATE_DIR/cache"
export RESTIC_PASSWORD_FILE RESTIC_CACHE_DIR
# restic starts `rclone` from PATH for an rclone: repository.
PATH="${RCLONE%/*}:$PATH"
if [ "$repository" = offsite ]; then
  [ -n "$SAMARTH_OFFSITE_REPOSITORY" ] || fail "$SERVER has no off-site repository (backups.offsite is not set)"
  case "$command" in
    snapshots | restore) ;;
    *) fail "--offsite reads the off-site repository: use it with 'snapshots' or samarth-restore" ;;
  esac
  RESTIC_REPOSITORY=$SAMARTH_OFFSITE_REPOSITORY
  RESTIC_PASSWORD_FILE="$CONFIG_DIR/offsite_password"
  SAMARTH_SFTP_COMMAND=""
fi

restic_() {
  if [ -n "$SAMARTH_SFTP_COMMAND" ]; then
    "$RESTIC" -o sftp.command="$SAMARTH_SFTP_COMMAND" "$@"
  else
    "$RESTIC" "$@"
  fi
}

# Every snapshot of a target, oldest first, one line each: "<id> <run tag> complete|incomplete <path>".
# restic prints one JSON array; each snapshot object starts with its "time" key.
runs_of() {
  restic_ snapshots --json --host "$SERVER" --tag "target=$1" | awk -v RS='[{]"time"' 'NR > 1 {
    id = ""; run = "-"; state = "incomplete"; path = "-"
    if (match($0, /"id":"[0-9a-f]+"/)) id = substr($0, RSTART + 6, RLENGTH - 7)
    if (match($0, /"run-[0-9A-Za-z-]+"/)) run = substr($0, RSTART + 1, RLENGTH - 2)
    if (match($0, /"paths":\["[^"]*"/)) path = substr($0, RSTART + 10, RLENGTH - 11)
    if (index($0, "\"complete\"")) state = "complete"
    if (id != "") print id, run, state, path
  }'
}

# restic with the off-site repository as its repository (the primary one stays reachable for --from-repo).
offsite_() {
  restic_ -r "$SAMARTH_OFFSITE_REPOSITORY" --password-file "$CONFIG_DIR/offsite_password" "$@"
}

snapshot_count() { # snapshot_count <restic_ or offsite_> <tag>
  "$1" snapshots --json --host "$SERVER" --tag "$2" | grep -o '"id":"' | wc -l
}

forget_ids() {
  set -f
  # shellcheck disable=SC2086 # one argument per snapshot id
  [ -z "$1" ] || restic_ forget --quiet $1 >/dev/null
  set +f
}

target_line() {
  printf '%s\n' "$TARGETS" | awk -v t="$1" '$1 == t'
}

# The seconds between two runs of a schedule: for any calendar event, between its next two elapses as
# systemd computes them (a day when systemd cannot say).
interval_seconds() {
  case "$1" in
    hourly) echo 3600 ;;
    daily) echo 86400 ;;
    weekly) echo 604800 ;;
    *)
      elapses=$(systemd-analyze calendar --iterations=2 "$1" 2>/dev/null | awk -F': ' '$1 ~ /(Next elapse|Iter\. #2)$/ { print $2 }')
      first=$(printf '%s\n' "$elapses" | sed -n 1p)
      second=$(printf '%s\n' "$elapses" | sed -n 2p)
      if [ -n "$second" ]; then
        echo $(($(date -d "$second" +%s) - $(date -d "$first" +%s)))
      else
        echo 86400
      fi
      ;;
  esac
}

# stream <file> <command...>: the command's stdout becomes <file> in a snapshot of this run. The
# exit status of the command travels through a file in the run's private work directory (POSIX sh
# has no pipefail); no data ever touches the disk unencrypted.
stream() {
  file=$1
  shift
  step "streaming $file of $target into restic"
  status_file="$work/$file.rc"
  restic_rc=0
  { dump_rc=0; "$@" || dump_rc=$?; echo "$dump_rc" >"$status_file"; } \
    | restic_ backup --quiet --host "$SERVER" --tag "samarth,target=$target,$run" --stdin --stdin-filename "$file" \
    || restic_rc=$?
  exit_code=missing
  [ -s "$status_file" ] && read -r exit_code <"$status_file"
  [ "$restic_rc" -eq 0 ] || fail "restic could not store $file of $target (exit $restic_rc)"
  [ "$exit_code" = 0 ] || fail "the dump of $file of $target failed (exit $exit_code): the run's snapshots are forgotten"
}

backup_postgres() {
  step "reading the superuser and databases of container $container"
  user=$(docker exec "$container" printenv POSTGRES_USER) || fail "container $container does not answer (is it running?)"
  databases=$(docker exec "$container" psql -U "$user" -d postgres -AtXc \
    "select datname from pg_database where datallowconn and not datistemplate order by 1") \
    || fail "cannot list the databases of container $container"
  stream globals.sql docker exec "$container" pg_dumpall -U "$user" --globals-only
  set -f
  for database in $databases; do
    stream "$database.dump" docker exec "$container" pg_dump -U "$user" -Fc -d "$database"
  done
  set +f
}

backup_redis() {
  stream dump.rdb docker exec "$container" redis-cli --no-auth-warning --rdb -
}

backup_rabbitmq() {
  stream definitions.json docker exec "$container" rabbitmqctl -q export_definitions -
}

vault_cli() {
  VAULT_TOKEN=$token BAO_TOKEN=$token docker exec -e VAULT_TOKEN -e BAO_TOKEN "$container" "$detail" "$@"
}

backup_vault_raft() {
  step "logging in to $detail with the snapshot AppRole"
  [ -r "$CONFIG_DIR/vault-approle" ] || fail "$CONFIG_DIR/vault-approle is missing: run 'pulumi up'"
  role_id=$(sed -n 's/^role_id=//p' "$CONFIG_DIR/vault-approle")
  token=$(awk -F= '$1 == "secret_id" { sub(/^[^=]*=/, ""); print }' "$CONFIG_DIR/vault-approle" \
    | docker exec -i "$container" "$detail" write -field=token auth/approle/login role_id="$role_id" secret_id=-) \
    || fail "the snapshot AppRole cannot log in to $detail in container $container (sealed, or the secret id was rotated?)"
  snapshot="/tmp/samarth-$run.snap"
  step "saving a raft snapshot inside container $container"
  vault_cli operator raft snapshot save "$snapshot" >/dev/null
  stream raft.snap docker exec "$container" cat "$snapshot"
  docker exec "$container" rm -f "$snapshot"
  vault_cli token revoke -self >/dev/null || true
}

# The host directory holding <container>'s path $detail (on one of its volumes).
host_directory() {
  docker inspect --format '{{range .Mounts}}{{.Destination}} {{.Source}}{{println}}{{end}}' "$container" \
    | awk -v want="$detail" '
      NF == 2 && (want == $1 || index(want, $1 "/") == 1) && length($1) > best {
        best = length($1); found = $2 substr(want, length($1) + 1)
      }
      END { if (found == "") exit 1; print found }'
}

backup_directory() {
  step "backing up $1"
  [ -d "$1" ] || fail "$1 does not exist on $SERVER"
  restic_ backup --quiet --host "$SERVER" --tag "samarth,target=$target,$run" "$1" \
    || fail "restic could not back up $1 completely (exit $?)"
}

backup_files() {
  step "finding $detail of container $container on the host"
  directory=$(host_directory) || fail "container $container has no volume holding $detail"
  backup_directory "$directory"
}

swarm_definitions() {
  ids=$(docker service ls -q)
  if [ -z "$ids" ]; then
    echo "[]"
  else
    set -f
    # shellcheck disable=SC2086 # one argument per service id
    docker service inspect $ids
    set +f
  fi
}

backup_swarm() {
  stream services.json swarm_definitions
  backup_directory "$(docker info --format '{{.DockerRootDir}}')/swarm"
}

record() {
  printf '%s %s\n' "$(date +%s)" "$2" >"$STATE_DIR/status/$target.$1"
}

on_exit() {
  exit_status=$?
  if [ "$exit_status" -ne 0 ] && [ -n "${run:-}" ] && [ "$command" = run ]; then
    [ -z "$SAMARTH_STEP" ] || echo "$SAMARTH_SCRIPT: failed while $SAMARTH_STEP (exit $exit_status)" >&2
    record failure "$run"
    forget_ids "$(runs_of "$target" | awk -v r="$run" '$2 == r { print $1 }')" \
      || echo "$SAMARTH_SCRIPT: could not forget the snapshots of failed $run; the next run will" >&2
    SAMARTH_STEP=""
  fi
  [ -z "${work:-}" ] || rm -rf "$work"
  if [ "$exit_status" -ne 0 ] && [ -n "$SAMARTH_STEP" ]; then
    echo "$SAMARTH_SCRIPT: failed while $SAMARTH_STEP (exit $exit_status)" >&2
  fi
}

run_target() {
  target=$1
  line=$(target_line "$target")
  [ -n "$line" ] || usage
  set -f
  # shellcheck disable=SC2086 # the fields of the target's line
  set -- $line
  set +f
  method=$2 container=$4 detail=$5
  step "waiting for other backups on $SERVER to finish"
  exec 9>"$STATE_DIR/lock"
  flock 9
  step "forgetting snapshots of $target left by runs that did not complete"
  forget_ids "$(runs_of "$target" | awk '$3 == "incomplete" { print $1 }')"
  run="run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
  work=$(mktemp -d "$STATE_DIR/work.XXXXXX")
  trap on_exit EXIT
  case "$method" in
    postgres) backup_postgres ;;
    redis) backup_redis ;;
    rabbitmq) backup_rabbitmq ;;
    vault-raft) backup_vault_raft ;;
    files) backup_files ;;
    swarm) backup_swarm ;;
    *) fail "unknown backup method $method for $target" ;;
  esac
  step "marking $run of $target complete"
  restic_ tag --quiet --host "$SERVER" --tag "$run" --add complete >/dev/null
  step "applying the retention policy to $target"
  restic_ forget --quiet --host "$SERVER" --tag "target=$target,complete" --group-by host,paths \
    --keep-hourly "$KEEP_HOURLY" --keep-daily "$KEEP_DAILY" --keep-weekly "$KEEP_WEEKLY" \
    --keep-monthly "$KEEP_MONTHLY" >/dev/null
  record success "$run"
  rm -f "$STATE_DIR/status/$target.failure"
  echo "$target: $run complete"
  # From here on a failure concerns the off-site copy only: the run stays recorded and kept.
  completed=$run
  run=""
  [ -z "$SAMARTH_OFFSITE_REPOSITORY" ] || copy_offsite
}

copy_offsite() {
  step "copying the complete runs of $target to the off-site repository"
  copied=yes
  offsite_ copy --quiet --from-repo "$RESTIC_REPOSITORY" --from-password-file "$RESTIC_PASSWORD_FILE" \
    --host "$SERVER" --tag "target=$target,complete" >/dev/null || copied=no
  if [ "$copied" = yes ] && [ "$(snapshot_count offsite_ "$completed")" != "$(snapshot_count restic_ "$completed")" ]; then
    copied=no
  fi
  if [ "$copied" = no ]; then
    record offsite-failure "$completed"
    # A half-copied run must not look like a backup there; the next copy sends it again.
    offsite_ forget --quiet --host "$SERVER" --tag "$completed" >/dev/null 2>&1 || true
    fail "$target: $completed is complete here, but its copy to the off-site repository failed (see above); the next run copies it again"
  fi
  step "applying the off-site retention policy to $target"
  offsite_ forget --quiet --host "$SERVER" --tag "target=$target,complete" --group-by host,paths \
    --keep-hourly "$OFFSITE_KEEP_HOURLY" --keep-daily "$OFFSITE_KEEP_DAILY" --keep-weekly "$OFFSITE_KEEP_WEEKLY" \
    --keep-monthly "$OFFSITE_KEEP_MONTHLY" >/dev/null
  record offsite-success "$completed"
  rm -f "$STATE_DIR/status/$target.offsite-failure"
  echo "$target: $completed copied off-site"
}

# status_stamp TARGET KIND: set $stamp_at (epoch) and $stamp (UTC) from the target's KIND status file
# (success, failure, offsite-success, offsite-failure); false when there is none yet.
status_stamp() {
  [ -s "$STATE_DIR/status/$1.$2" ] || return 1
  read -r stamp_at _ <"$STATE_DIR/status/$1.$2"
  stamp=$(date -u -d "@$stamp_at" '+%Y-%m-%d %H:%M:%S')
}

show_status() {
  overdue=0
  now=$(date +%s)
  printf '%-34s %-8s %-22s %-10s %-22s %s\n' target schedule "last success (UTC)" age "last failure (UTC)" \
    "$([ -z "$SAMARTH_OFFSITE_REPOSITORY" ] || echo "off-site: last copy (UTC), last failure")"
  for name in $(printf '%s\n' "$TARGETS" | awk 'NF { print $1 }'); do
    schedule=$(target_line "$name" | awk '{ print $3 }')
    allowed=$((2 * $(interval_seconds "$schedule")))
    success=never age=- failure=-
    if status_stamp "$name" success; then
      success=$stamp
      age="$(((now - stamp_at) / 3600))h$(((now - stamp_at) % 3600 / 60))m"
      [ "$((now - stamp_at))" -le "$allowed" ] || overdue=1
    else
      overdue=1
    fi
    ! status_stamp "$name" failure || failure=$stamp
    offsite=""
    if [ -n "$SAMARTH_OFFSITE_REPOSITORY" ]; then
      copy=never copy_failure=-
      if status_stamp "$name" offsite-success; then
        copy=$stamp
        [ "$((now - stamp_at))" -le "$allowed" ] || overdue=1
      else
        overdue=1
      fi
      ! status_stamp "$name" offsite-failure || copy_failure=$stamp
      offsite="$copy, $copy_failure"
    fi
    printf '%-34s %-8s %-22s %-10s %-22s %s\n' "$name" "$schedule" "$success" "$age" "$failure" "$offsite"
  done
  SAMARTH_STEP=""
  [ "$overdue" -eq 0 ] || { echo "a target has no success (or off-site copy) within twice its interval: see 'systemctl --failed' and 'journalctl -u samarth-backup@<target>'" >&2; exit 1; }
}

# --- restore -------------------------------------------------------------------------------------

# from_snapshot <what> <id> <path> <consumer...>: the file <path> of snapshot <id> into the consumer's
# stdin; both restic and the consumer must exit 0 (no pipefail in POSIX sh).
from_snapshot() {
  what=$1 id=$2 path=$3
  shift 3
  dump_status="$work/dump.rc"
  rm -f "$dump_status"
  consumer_rc=0
  { dump_rc=0; restic_ dump "$id" "$path" || dump_rc=$?; echo "$dump_rc" >"$dump_status"; } | "$@" || consumer_rc=$?
  dumped=missing
  [ -s "$dump_status" ] && read -r dumped <"$dump_status"
  [ "$dumped" = 0 ] || fail "$what: restic could not read $path of snapshot $id (exit $dumped)"
  [ "$consumer_rc" -eq 0 ] || fail "$what: failed (exit $consumer_rc); see the output above"
}

# The run to restore: the newest complete one, or the run of the snapshot id (or prefix) given.
choose_run() {
  if [ -n "$wanted" ]; then
    chosen=$(runs_of "$target" | awk -v s="$wanted" 'index($1, s) == 1 && $3 == "complete" { print $2 }' | tail -n 1)
    [ -n "$chosen" ] || fail "no complete snapshot of $target starts with $wanted: see 'samarth-backup snapshots $target'"
  else
    chosen=$(runs_of "$target" | awk '$3 == "complete" { print $2 }' | tail -n 1)
    [ -n "$chosen" ] || fail "$target has no complete backup in the repository"
  fi
  parts=$(runs_of "$target" | awk -v r="$chosen" '$2 == r && $3 == "complete" { print $1, $4 }')
  echo "restoring $chosen of $target"
}

part_id() {
  printf '%s\n' "$parts" | awk -v p="$1" '$2 == p { print $1 }'
}

wait_for_postgres() {
  step "waiting for Postgres in container $1"
  tries=0
  # The official image's entrypoint runs a socket-only server while it initialises, then execs the real one.
  until docker exec "$1" sh -c '[ "$(tr "\0" "\n" </proc/1/cmdline | head -n 1 | sed "s,.*/,,")" = postgres ] && pg_isready -q -U "$POSTGRES_USER" -d postgres' 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 90 ] || fail "Postgres in container $1 did not become ready in 180 s: see 'docker logs $1'"
    sleep 2
  done
}

# Row counts of every table of every database in a Postgres container, one line "db schema.table count".
row_counts() {
  for database in $(docker exec "$1" psql -U "$user" -d postgres -AtXc \
      "select datname from pg_database where datallowconn and not datistemplate order by 1"); do
    docker exec "$1" psql -U "$user" -d "$database" -AtX -F ' ' -c "select '$database', table_schema || '.' || table_name,
      (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.%I', table_schema, table_name), false, true, '')))[1]::text
      from information_schema.tables where table_type = 'BASE TABLE'
      and table_schema not in ('pg_catalog', 'information_schema') order by 2"
  done
}

# The scratch container a restore is checked in: the live container's image and environment, on the
# fresh volume $volume, with no network.
start_scratch() {
  docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" >"$work/env"
  docker volume create --label "samarth.restore-of=$container" "$volume" >/dev/null
  docker run -d --name "$scratch" --network none --env-file "$work/env" -v "$volume:$detail" "$image" >/dev/null
}

restore_postgres() {
  user=$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" | sed -n 's/^POSTGRES_USER=//p')
  [ -n "$user" ] || fail "container $container has no POSTGRES_USER in its environment"
  step "starting scratch container $scratch on fresh volume $volume"
  start_scratch
  wait_for_postgres "$scratch"
  globals=$(part_id /globals.sql)
  [ -n "$globals" ] || fail "$chosen has no globals.sql"
  step "restoring roles (globals.sql); existing roles are reported and kept"
  from_snapshot "restoring roles" "$globals" /globals.sql docker exec -i "$scratch" psql -U "$user" -d postgres -X -q -o /dev/null
  for part in $(printf '%s\n' "$parts" | awk '$2 ~ /\.dump$/ { print $2 }'); do
    database=${part#/}
    database=${database%.dump}
    step "restoring database $database"
    if [ "$database" = postgres ]; then
      from_snapshot "restoring $database" "$(part_id "$part")" "$part" docker exec -i "$scratch" pg_restore -U "$user" -d postgres --clean --if-exists --exit-on-error
    else
      from_snapshot "restoring $database" "$(part_id "$part")" "$part" docker exec -i "$scratch" pg_restore -U "$user" -d postgres --create --clean --if-exists --exit-on-error
    fi
    step "checking database $database against the archive's table list"
    from_snapshot "listing $part" "$(part_id "$part")" "$part" docker exec -i "$scratch" sh -c 'pg_restore -l >/tmp/toc && cat >/dev/null'
    expected=$(docker exec "$scratch" awk '$4 == "TABLE" && $5 != "DATA"' /tmp/toc | wc -l)
    found=$(docker exec "$scratch" psql -U "$user" -d "$database" -AtXc \
      "select count(*) from information_schema.tables where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')")
    [ "$found" -eq "$expected" ] || fail "database $database has $found tables after the restore, its archive lists $expected"
  done
  step "counting rows"
  row_counts "$scratch" >"$STATE_DIR/restore/$scratch.rows"
  echo "restored and checked: $(wc -l <"$STATE_DIR/restore/$scratch.rows") tables; row counts in $STATE_DIR/restore/$scratch.rows"
}

restore_files() {
  step "restoring $detail into fresh volume $volume"
  path=$(printf '%s\n' "$parts" | awk 'NR == 1 { print $2 }')
  docker volume create --label "samarth.restore-of=$container" "$volume" >/dev/null
  mountpoint=$(docker volume inspect --format '{{.Mountpoint}}' "$volume")
  # restic puts the files under their full path (0.14 has no <snapshot>:<subfolder>); move them up.
  unpacked="$mountpoint/.samarth-restore"
  restic_ restore --quiet --verify "$(part_id "$path")" --target "$unpacked" --include "$path" \
    || fail "restic could not restore $path completely"
  find "$unpacked$path" -mindepth 1 -maxdepth 1 -exec mv {} "$mountpoint/" \;
  rm -rf "$unpacked"
  echo "restored and verified $(find "$mountpoint" -type f | wc -l) files of $detail into volume $volume"
}

# redis_cli <container> <args...>: redis-cli inside the container with its own environment (live
# containers carry the password as REDISCLI_AUTH; scratch ones have none and no network).
redis_cli() {
  redis_container=$1
  shift
  docker exec "$redis_container" redis-cli --no-auth-warning -h 127.0.0.1 "$@"
}

wait_for_redis() {
  step "waiting for Redis in container $1 to load its data"
  tries=0
  # PING answers LOADING until the whole dataset is in memory.
  until [ "$(redis_cli "$1" ping 2>/dev/null)" = PONG ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 90 ] || fail "Redis in container $1 did not load its data in 180 s: see 'docker logs $1'"
    sleep 2
  done
}

# "<keys> <keys with an expiry>" over every database of the Redis in a container.
redis_key_counts() {
  redis_cli "$1" info keyspace | tr -d '\r' | awk -F '[:=,]' '/^db[0-9]+:/ { keys += $3; expires += $5 } END { print keys + 0, expires + 0 }'
}

# dump.rdb from stdin into the restored volume, owned by the image's redis user (as the official image's
# entry point leaves its data directory), then checked with the image's redis-check-rdb where it has
# one (the official image does): one helper container for both.
write_and_check_rdb() {
  docker run --rm -i --network none --entrypoint sh -v "$volume:/restored" "$image" -c '
    cat >/restored/dump.rdb && chown -R redis:redis /restored || exit
    if command -v redis-check-rdb >/dev/null; then redis-check-rdb /restored/dump.rdb; else echo "no redis-check-rdb in the image"; fi' \
    >"$work/check-rdb" 2>&1 || { rc=$?; tail -n 20 "$work/check-rdb" >&2; return "$rc"; }
}

restore_redis() {
  rdb=$(part_id /dump.rdb)
  [ -n "$rdb" ] || fail "$chosen has no dump.rdb"
  step "writing dump.rdb of $chosen into fresh volume $volume and checking it"
  docker volume create --label "samarth.restore-of=$container" "$volume" >/dev/null
  from_snapshot "writing and checking dump.rdb" "$rdb" /dump.rdb write_and_check_rdb
  rdb_keys=$(awk '/^\[info\] [0-9]+ keys read/ { print $2 }' "$work/check-rdb")
  rdb_expires=$(awk '/^\[info\] [0-9]+ expires/ { print $2 }' "$work/check-rdb")
  [ -n "$rdb_keys" ] || echo "the image $image has no redis-check-rdb; loading dump.rdb is the check"
  # Without an append-only file Redis loads dump.rdb; the scratch then writes one (CONFIG SET appendonly
  # yes rewrites the whole dataset into it), because the live container runs with --appendonly yes and
  # loads only the append-only file when there is one.
  step "loading dump.rdb in scratch container $scratch (no network)"
  docker run -d --name "$scratch" --network none -v "$volume:$detail" "$image" \
    redis-server --dir "$detail" --appendonly no --save '' >/dev/null
  wait_for_redis "$scratch"
  counts=$(redis_key_counts "$scratch")
  keys=${counts% *} expiring=${counts#* }
  # Keys whose expiry passed since the backup are not loaded; every other key must be.
  if [ -n "$rdb_keys" ] && { [ "$keys" -lt "$((rdb_keys - ${rdb_expires:-0}))" ] || [ "$keys" -gt "$rdb_keys" ]; }; then
    fail "Redis loaded $keys keys from dump.rdb of $chosen, which holds $rdb_keys ($rdb_expires with an expiry)"
  fi
  step "writing the append-only file of the restored data"
  redis_cli "$scratch" config set appendonly yes >/dev/null
  tries=0
  until redis_cli "$scratch" info persistence | tr -d '\r' \
      | grep -qx 'aof_rewrite_in_progress:0' && redis_cli "$scratch" info persistence | tr -d '\r' | grep -qx 'aof_rewrite_scheduled:0'; do
    tries=$((tries + 1))
    [ "$tries" -lt 90 ] || fail "Redis in $scratch did not finish writing its append-only file in 180 s: see 'docker logs $scratch'"
    sleep 2
  done
  redis_cli "$scratch" info persistence | tr -d '\r' | grep -qx 'aof_last_bgrewrite_status:ok' \
    || fail "Redis in $scratch could not write its append-only file: see 'docker logs $scratch'"
  docker stop "$scratch" >/dev/null
  docker rm "$scratch" >/dev/null
  printf '%s %s\n' "$keys" "$expiring" >"$STATE_DIR/restore/$scratch.keys"
  echo "restored and checked: $keys keys ($expiring with an expiry)${rdb_keys:+, dump.rdb holds $rdb_keys}; counts in $STATE_DIR/restore/$scratch.keys"
}

# After the swap: the live Redis loads the restored data (all keys but those expired since).
check_live_redis() {
  wait_for_redis "$container"
  counts=$(redis_key_counts "$container")
  live_keys=${counts% *}
  step "comparing the live key count with the restored one"
  if [ "$live_keys" -lt "$((keys - expiring))" ] || [ "$live_keys" -gt "$keys" ]; then
    fail "Redis in $container has $live_keys keys after the swap, the restored data $keys: the previous data is in volume $keep"
  fi
  echo "$container loaded $live_keys keys"
}

# The identity of every object in a definitions export (stdin), sorted, one line each: its section and
# its name, vhost, user, source, destination and routing key (the values an application refers to).
definition_identities() {
  sed -E 's/"(bindings|exchanges|global_parameters|parameters|permissions|policies|queues|topic_permissions|users|vhosts)":\[/\n@\1 /g' \
    | awk '/^@/ {
      section = substr($1, 2)
      sub(/^@[a-z_]+ /, "")
      n = split($0, objects, /\},\{/)
      for (i = 1; i <= n; i++) {
        id = ""
        rest = objects[i]
        while (match(rest, /"(name|vhost|user|source|destination|destination_type|routing_key|component)":"[^"]*"/)) {
          id = id " " substr(rest, RSTART, RLENGTH)
          rest = substr(rest, RSTART + RLENGTH)
        }
        if (id != "") print section id
      }
    }' | LC_ALL=C sort
}

wait_for_rabbitmq() {
  step "waiting for RabbitMQ in container $1 to start"
  tries=0
  until docker exec "$1" rabbitmqctl -q await_startup >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || fail "RabbitMQ in container $1 did not start in 180 s: see 'docker logs $1'"
    sleep 3
  done
}

# import_definitions <container>: definitions on stdin into the broker. rabbitmqctl import_definitions
# reading stdin keeps only what the first read returns (RabbitMQ 3.10 in the lab: a stream that arrives
# in two parts fails with "unexpected_end_of_buffer"), and takes "-" for a file name; so the whole stream
# goes into a root-only file in the container first, removed afterwards.
import_definitions() {
  # shellcheck disable=SC2016 # expanded inside the container
  docker exec -i "$1" sh -c 'umask 077; file=$(mktemp) || exit; cat >"$file" && rabbitmqctl -q import_definitions "$file"; rc=$?; rm -f "$file"; exit "$rc"'
}

# check_definitions <container> <what>: every object of the backed-up definitions is on the broker.
check_definitions() {
  docker exec "$1" rabbitmqctl -q export_definitions - | definition_identities >"$work/found" \
    || fail "cannot export the definitions of container $1"
  missing=$(LC_ALL=C comm -23 "$work/expected" "$work/found")
  [ -z "$missing" ] || fail "$2 lacks $(printf '%s\n' "$missing" | wc -l) of the restored definitions, first: $(printf '%s\n' "$missing" | head -n 3)"
}

restore_rabbitmq() {
  definitions=$(part_id /definitions.json)
  [ -n "$definitions" ] || fail "$chosen has no definitions.json"
  from_snapshot "reading definitions.json" "$definitions" /definitions.json definition_identities >"$work/expected"
  [ -s "$work/expected" ] || fail "definitions.json of $chosen holds no definitions"
  step "starting scratch broker $scratch on fresh volume $volume (no network)"
  start_scratch
  wait_for_rabbitmq "$scratch"
  step "importing definitions.json of $chosen into $scratch"
  from_snapshot "importing definitions.json into $scratch" "$definitions" /definitions.json import_definitions "$scratch"
  step "checking the scratch broker holds every definition"
  check_definitions "$scratch" "the scratch broker"
  docker rm -f "$scratch" >/dev/null
  docker volume rm "$volume" >/dev/null
  echo "restored and checked: $(wc -l <"$work/expected") definitions ($(awk '{ print $1 }' "$work/expected" | uniq -c | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }'))"
}

# Import the checked definitions into the live broker: objects are added or updated, none is deleted,
# queues keep their messages. The live definitions are saved first.
import_live_definitions() {
  before="$STATE_DIR/restore/$container-definitions-before-$stamp.json"
  step "saving the live definitions of $container into $before"
  docker exec "$container" rabbitmqctl -q export_definitions - >"$before" || fail "cannot export the definitions of container $container (is it running?)"
  step "importing definitions.json of $chosen into $container"
  from_snapshot "importing definitions.json into $container" "$definitions" /definitions.json import_definitions "$container"
  step "setting the deployed password of the service user again"
  # The backup holds the password hashes of its time; the applications use the container's password.
  # shellcheck disable=SC2016 # expanded inside the container: the password never leaves it
  docker exec "$container" sh -c '[ -z "${RABBITMQ_DEFAULT_USER:-}" ] || printf "%s\n" "$RABBITMQ_DEFAULT_PASS" | rabbitmqctl -q change_password "$RABBITMQ_DEFAULT_USER"' >/dev/null \
    || fail "cannot set the password of the service user in $container again: run 'pulumi up' (its password step sets it)"
  step "checking the live broker holds every definition"
  check_definitions "$container" "$container"
  echo "$container has every restored definition; its definitions before the import are in $before"
}

# The operator's token for the restore (root, or a token with sudo on sys/storage/raft/snapshot-force),
# read from stdin, never from the command line; at a terminal it is asked for without echo.
read_restore_token() {
  restore_token=""
  if [ -t 0 ]; then
    printf 'token that may restore a raft snapshot (root, or sudo on sys/storage/raft/snapshot-force): ' >&2
    stty -echo
    IFS= read -r restore_token || true
    stty echo
    echo >&2
  else
    IFS= read -r restore_token || true
  fi
  [ -n "$restore_token" ] || fail "no token on stdin: run 'samarth-restore $target [snapshot] --replace-live' and type it, or pipe it in from your password manager"
}

# A raft snapshot is a gzipped tar of meta.json, state.bin and their SHA256SUMS: all there and matching.
check_raft_snapshot() {
  step "checking raft.snap of $chosen (archive, members, checksums)"
  mkdir "$work/snapshot"
  tar -xzf "$1" -C "$work/snapshot" || fail "raft.snap of $chosen is not a readable snapshot archive"
  for member in meta.json state.bin SHA256SUMS; do
    [ -s "$work/snapshot/$member" ] || fail "raft.snap of $chosen has no $member"
  done
  (cd "$work/snapshot" && sha256sum -c --quiet SHA256SUMS) || fail "raft.snap of $chosen does not match its own SHA256SUMS"
  raft_index=$(sed -n 's/.*"Index":\([0-9]*\).*/\1/p' "$work/snapshot/meta.json")
  rm -rf "$work/snapshot"
}

restore_vault_raft() {
  snapshot_id=$(part_id /raft.snap)
  [ -n "$snapshot_id" ] || fail "$chosen has no raft.snap"
  directory="$STATE_DIR/restore/$target-$stamp"
  mkdir -p "$directory"
  step "extracting raft.snap of $chosen"
  restic_ dump "$snapshot_id" /raft.snap >"$directory/raft.snap" || fail "restic could not read raft.snap of $chosen"
  check_raft_snapshot "$directory/raft.snap"
  echo "restored and checked: raft.snap of $chosen (raft index ${raft_index:-unknown}) in $directory (root only)"
  if [ "$replace" = no ]; then
    echo "live Vault untouched. To restore it (all of Vault's data returns to the snapshot's): samarth-restore $target ${wanted:-<snapshot>} --replace-live [--other-cluster], the token on stdin"
    return 0
  fi
  read_restore_token
  inside="/tmp/samarth-restore-$stamp.snap"
  step "copying the snapshot into container $container"
  docker exec -i "$container" sh -c 'umask 077 && cat >"$1"' sh "$inside" <"$directory/raft.snap" \
    || fail "cannot copy the snapshot into container $container (is it running?)"
  # Without --other-cluster Vault refuses a snapshot of another cluster (another init: other keys).
  force=""
  [ "$other_cluster" = no ] || force=-force
  step "restoring the snapshot into $detail in container $container"
  restored=0
  VAULT_TOKEN=$restore_token BAO_TOKEN=$restore_token docker exec -e VAULT_TOKEN -e BAO_TOKEN "$container" \
    "$detail" operator raft snapshot restore $force "$inside" || restored=$?
  docker exec "$container" rm -f "$inside" || true
  [ "$restored" -eq 0 ] || fail "$detail refused the snapshot (exit $restored): a snapshot of a re-initialised Vault needs --other-cluster; the token needs sudo on sys/storage/raft/snapshot-force"
  step "reading the seal status of $container"
  tries=0
  until status=$(docker exec "$container" "$detail" status -format=json 2>/dev/null) || [ "$?" -eq 2 ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || fail "$detail in $container does not answer after the restore: see 'docker logs $container'"
    sleep 2
  done
  if printf '%s\n' "$status" | grep -q '"sealed": *true'; then
    echo "$container restored the snapshot and is sealed: unseal it with the unseal keys of the snapshot's cluster (Pulumi state of that time; 'pulumi up' runs the unseal script)"
  else
    echo "$container restored the snapshot and is unsealed"
  fi
}

# Swap the checked data into the live container's volume; the live data is kept in another volume.
replace_live() {
  live_volume=$(docker inspect --format '{{range .Mounts}}{{.Destination}} {{.Name}}{{println}}{{end}}' "$container" \
    | awk -v want="$mount" '$1 == want { print $2 }')
  [ -n "$live_volume" ] || fail "container $container has no volume at $mount"
  keep="$container-data-before-$stamp"
  step "stopping container $container"
  docker stop "$container" >/dev/null
  step "keeping the live data in volume $keep, then moving the restored data into $live_volume"
  docker volume create --label "samarth.replaced-by-restore=$container" "$keep" >/dev/null
  docker run --rm --network none --entrypoint sh -v "$live_volume:/live" -v "$keep:/keep" -v "$volume:/restored" "$image" \
    -c 'cp -a /live/. /keep/ && find /live -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a /restored/. "/live$1"' sh "$inside" \
    || fail "the swap failed: the live data is in volume $keep; container $container is stopped"
  step "starting container $container"
  docker start "$container" >/dev/null
  echo "$container now runs on the restored data; the previous data is in volume $keep (remove it with 'docker volume rm $keep' once satisfied)"
}

restore_target() {
  target="" wanted="" replace=no other_cluster=no
  for argument in "$@"; do
    case "$argument" in
      --replace-live) replace=yes ;;
      --other-cluster) other_cluster=yes ;;
      -*) usage ;;
      *) if [ -z "$target" ]; then target=$argument; elif [ -z "$wanted" ]; then wanted=$argument; else usage; fi ;;
    esac
  done
  [ -n "$target" ] || usage
  line=$(target_line "$target")
  [ -n "$line" ] || usage
  set -f
  # shellcheck disable=SC2086 # the fields of the target's line
  set -- $line
  set +f
  method=$2 container=$4 detail=$5
  mkdir -p "$STATE_DIR/restore"
  work=$(mktemp -d "$STATE_DIR/work.XXXXXX")
  trap on_exit EXIT
  step "finding the run to restore"
  choose_run
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  volume="$container-restore-$stamp"
  scratch="$container-restore-$stamp"
  image=$(docker inspect --format '{{.Config.Image}}' "$container") || fail "container $container does not exist on $SERVER"
  case "$method" in
    postgres)
      restore_postgres
      docker stop "$scratch" >/dev/null
      docker rm "$scratch" >/dev/null
      mount=$detail inside=""
      ;;
    redis)
      restore_redis
      mount=$detail inside=""
      ;;
    vault-raft)
      restore_vault_raft
      SAMARTH_STEP=""
      return 0
      ;;
    rabbitmq)
      restore_rabbitmq
      if [ "$replace" = yes ]; then
        import_live_definitions
      else
        echo "live broker untouched. To import them into $container: samarth-restore $target ${wanted:-<snapshot>} --replace-live"
      fi
      SAMARTH_STEP=""
      return 0
      ;;
    files)
      restore_files
      mount=$(docker inspect --format '{{range .Mounts}}{{.Destination}}{{println}}{{end}}' "$container" \
        | awk -v want="$detail" '(want == $1 || index(want, $1 "/") == 1) && length($1) > length(best) { best = $1 } END { print best }')
      inside=${detail#"$mount"}
      ;;
    *)
      directory="$STATE_DIR/restore/$target-$stamp"
      mkdir -p "$directory"
      for part in $(printf '%s\n' "$parts" | awk '{ print $2 }'); do
        step "extracting $part"
        if [ "$method" = swarm ] && [ "$part" != /services.json ]; then
          restic_ restore --quiet --verify "$(part_id "$part")" --target "$directory" || fail "restic could not restore $part"
        else
          restic_ dump "$(part_id "$part")" "$part" >"$directory/${part#/}" || fail "restic could not read $part"
        fi
      done
      echo "extracted $chosen of $target into $directory (root only); apply it as docs/backups.md says for $method"
      [ "$replace" = no ] || fail "--replace-live is not automated for $method: follow docs/backups.md"
      SAMARTH_STEP=""
      return 0
      ;;
  esac
  if [ "$replace" = yes ]; then
    replace_live
    [ "$method" != redis ] || check_live_redis
  else
    echo "live data untouched. To switch $container to it: samarth-restore $target ${wanted:-<snapshot>} --replace-live"
    echo "(or inspect it: docker run --rm -it --network none -v $volume:$detail $image sh)"
  fi
  SAMARTH_STEP=""
}

# with_password <location> <password file> <restic arguments...>: restic on the repository at <location>,
# opened with the password in <password file>.
with_password() {
  password_location=$1 password_file=$2
  shift 2
  restic_ -r "$password_location" --password-file "$password_file" "$@"
}

# probe <location> <password file> <restic command...>: a restic command that opens the repository with
# that password; sets $state: opens ($probed holds the command's output), refused (the repository exists
# and none of its keys opens with the password) or missing (there is no repository). Anything else stops.
probe() {
  probe_rc=0
  probed=$(with_password "$@" 2>"$work/probe") || probe_rc=$?
  probe_errors=$(cat "$work/probe")
  case "$probe_rc:$probe_errors" in
    0:*) state=opens ;;
    12:* | *"wrong password or no key found"*) state=refused ;;
    # restic 0.17 and newer exit 10 when there is no repository; 0.14 only says it cannot read its config,
    # as for any other error reading it (restic init then refuses to create one where one exists).
    10:* | *"unable to open config file"*) state=missing ;;
    *) fail "restic cannot open the repository at $1 (exit $probe_rc): $probe_errors" ;;
  esac
}

# The id of the key the last probe's password opened (its output: restic key list --json).
current_key() {
  printf '%s\n' "$probed" | awk -v RS='[{}]' '/"current":true/ && match($0, /"id":"[0-9a-f]+"/) { print substr($0, RSTART + 6, RLENGTH - 7) }'
}

# unopened <what was tried>: stop, leaving the repository and the installed password as they are.
unopened() {
  fail "$1: the repository exists, so it is not created again, and nothing was changed. Put a password that opens it into $installed (as root, mode 0600; Vault keeps the one this server last took as $(printf '%s' "$SERVER" | tr 'a-z-' 'A-Z_')_$vault_key, see docs/backups.md) and run 'pulumi up' again, which then adds the new password as a key. Never 'restic init' there: its backups would be lost."
}

# settle_password <what> <location> <password file> <Vault key>: leave in <password file> a password that
# opens the repository at <location>, $state opens (or missing: there is no repository yet). A new password
# from the installer (<password file>.new) becomes a key of the repository (restic key add, opened with the
# installed password), is proven to open it, the installed password's key is removed, and only then does
# the new password replace the file. After a failure at any step, running it again finishes the change.
settle_password() {
  what=$1 location=$2 installed=$3 vault_key=$4 new=$3.new
  if [ -f "$new" ] && [ -f "$installed" ] && cmp -s "$new" "$installed"; then
    rm -f "$new"
  fi
  if [ ! -f "$new" ]; then
    [ -f "$installed" ] || fail "$installed is missing: run 'pulumi up' to install the backup agent"
    step "opening the $what with $installed"
    probe "$location" "$installed" cat config
    [ "$state" != refused ] || unopened "the installed password ($installed) does not open the $what at $location"
    return 0
  fi
  step "opening the $what with the new password"
  probe "$location" "$new" key list --json
  old_key=""
  case "$state" in
    missing)
      mv -f "$new" "$installed"
      return 0
      ;;
    opens)
      # A key an earlier run added, or the repository of a rebuilt server.
      new_key=$(current_key)
      if [ -f "$installed" ]; then
        probe "$location" "$installed" key list --json
        [ "$state" != opens ] || old_key=$(current_key)
      fi
      ;;
    refused)
      [ -f "$installed" ] || unopened "the new password does not open the $what at $location, and no password is installed ($installed is missing)"
      step "opening the $what with the installed password"
      probe "$location" "$installed" key list --json
      [ "$state" = opens ] || unopened "neither the new password nor the installed one ($installed) opens the $what at $location"
      old_key=$(current_key)
      step "adding the new password as a key of the $what"
      with_password "$location" "$installed" key add --new-password-file "$new" >/dev/null
      step "opening the $what with the new key"
      probe "$location" "$new" key list --json
      [ "$state" = opens ] || fail "the new key does not open the $what at $location; the installed password still does, and nothing was removed"
      new_key=$(current_key)
      ;;
  esac
  if [ -n "$old_key" ] && [ "$old_key" != "$new_key" ]; then
    step "removing key $old_key of the installed password from the $what"
    with_password "$location" "$new" key remove "$old_key" >/dev/null
    probe "$location" "$installed" cat config
    [ "$state" = refused ] || fail "the previous password still opens the $what at $location after its key $old_key was removed (another key of it has the same password?): remove that key with 'restic key remove', then run 'pulumi up' again"
    echo "$what: the new password is key $new_key; key $old_key of the previous password is removed"
  fi
  mv -f "$new" "$installed"
  state=opens
}

case "$command" in
  restore) restore_target "$@" ;;
  run)
    [ "$#" -eq 1 ] || usage
    run_target "$1"
    ;;
  status) show_status ;;
  snapshots)
    step "listing snapshots"
    if [ "$#" -eq 1 ]; then
      restic_ snapshots --host "$SERVER" --tag "target=$1,complete"
    else
      restic_ snapshots --host "$SERVER" --tag complete
    fi
    ;;
  prune)
    exec 9>"$STATE_DIR/lock"
    flock 9
    step "pruning the repository"
    restic_ prune --quiet
    step "checking the repository"
    restic_ check --quiet
    target=prune
    record success prune
    if [ -n "$SAMARTH_OFFSITE_REPOSITORY" ]; then
      step "pruning the off-site repository"
      offsite_ prune --quiet
      step "checking the off-site repository"
      offsite_ check --quiet
      record offsite-success prune
    fi
    ;;
  init)
    # Under the agents' lock: no run uses a password whose key is being removed.
    exec 9>"$STATE_DIR/lock"
    flock 9
    work=$(mktemp -d "$STATE_DIR/work.XXXXXX")
    # A new password not adopted is not kept: the installer hands it over again on the next run.
    trap 'on_exit; rm -f "$CONFIG_DIR/password.new" "$CONFIG_DIR/offsite_password.new"' EXIT
    settle_password repository "$RESTIC_REPOSITORY" "$CONFIG_DIR/password" RESTIC_PASSWORD
    if [ "$state" = missing ]; then
      step "initialising the repository"
      restic_ init >/dev/null
      echo "repository initialised"
    else
      echo "repository exists"
    fi
    if [ -n "$SAMARTH_OFFSITE_REPOSITORY" ]; then
      settle_password "off-site repository" "$SAMARTH_OFFSITE_REPOSITORY" "$CONFIG_DIR/offsite_password" OFFSITE_RESTIC_PASSWORD
      if [ "$state" = missing ]; then
        step "initialising the off-site repository with the chunker parameters of the repository (so copies deduplicate)"
        offsite_ init --from-repo "$RESTIC_REPOSITORY" --from-password-file "$RESTIC_PASSWORD_FILE" --copy-chunker-params >/dev/null
        echo "off-site repository initialised"
      else
        echo "off-site repository exists"
      fi
    fi
    ;;
  *) usage ;;
esac
