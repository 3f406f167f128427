#!/bin/sh
# Back up the Pulumi state (it holds the Vault unseal keys and every generated password) into a restic
# repository that is NOT one of the six servers' repositories. Run it where `pulumi` runs, as the account
# that is logged in to the backend, after each `pulumi up` and daily (cron). See docs/backups.md.
#
#   RESTIC_REPOSITORY=sftp:backup@offsite:/srv/pulumi-state RESTIC_PASSWORD_FILE=~/.config/samarth/restic-password \
#     tools/backup-pulumi-state.sh [stack ...]        (default: every stack of the project)
#
# Each stack's `pulumi stack export` is streamed into restic (its secrets stay encrypted with the stack's
# secrets provider: keep the passphrase or KMS key too). With a file:// backend, the backend directory is
# backed up as well. A failed export forgets the snapshots of its run and exits non-zero.
set -eu

fail() { echo "backup-pulumi-state: $*" >&2; exit 1; }
[ -n "${RESTIC_REPOSITORY:-}${RESTIC_REPOSITORY_FILE:-}" ] || fail "set RESTIC_REPOSITORY (or RESTIC_REPOSITORY_FILE)"
[ -n "${RESTIC_PASSWORD_FILE:-}${RESTIC_PASSWORD_COMMAND:-}" ] || fail "set RESTIC_PASSWORD_FILE (a file only you can read), not a password on the command line"
command -v pulumi >/dev/null 2>&1 || fail "pulumi is not on PATH"
command -v restic >/dev/null 2>&1 || fail "restic is not on PATH"
cd "$(dirname "$0")/.."

backend=$(pulumi whoami --verbose 2>/dev/null | sed -n 's/^Backend URL: *//p')
[ -n "$backend" ] || fail "pulumi is not logged in to a backend (pulumi login)"
if [ "$#" -eq 0 ]; then
  # shellcheck disable=SC2046 # one argument per stack name
  set -- $(pulumi stack ls --json | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/; s,.*/,,')
fi
[ "$#" -gt 0 ] || fail "no stacks found in $backend"

run="run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
forget_run() {
  ids=$(restic snapshots --json --tag "$run" | awk -v RS='[{]"time"' 'NR > 1 && match($0, /"id":"[0-9a-f]+"/) { print substr($0, RSTART + 6, RLENGTH - 7) }')
  # shellcheck disable=SC2086 # one argument per snapshot id
  [ -z "$ids" ] || restic forget --quiet $ids >/dev/null
}

for stack in "$@"; do
  rc=0
  { export_rc=0; pulumi stack export --stack "$stack" || export_rc=$?; echo "$export_rc" >"$work/rc"; } \
    | restic backup --quiet --tag "pulumi-state,$run" --stdin --stdin-filename "$stack.json" || rc=$?
  exported=missing
  [ -s "$work/rc" ] && read -r exported <"$work/rc"
  if [ "$rc" -ne 0 ] || [ "$exported" != 0 ]; then
    forget_run
    fail "the export of stack $stack failed (pulumi $exported, restic $rc); this run's snapshots are forgotten"
  fi
done
case "$backend" in
  file://*)
    directory=${backend#file://}
    case "$directory" in "~"*) directory="$HOME${directory#"~"}" ;; esac
    restic backup --quiet --tag "pulumi-state,$run" "$directory/.pulumi" || { forget_run; fail "could not back up $directory/.pulumi"; }
    ;;
esac
restic tag --quiet --tag "$run" --add complete >/dev/null
restic forget --quiet --tag pulumi-state,complete --keep-daily 30 --keep-weekly 12 --keep-monthly 24 >/dev/null
echo "backed up the state of $* from $backend ($run)"
