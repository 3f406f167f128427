# shellcheck shell=sh
# Installs the backup agent on one server, idempotently (components/backups.py runs it on `pulumi up`):
# restic copied out of its pinned image, the root-only credential files from stdin, the agent as
# samarth-backup (and samarth-restore), one systemd timer per target plus the daily prune, then the
# agent's `init`: a new password becomes a key of its repository before it replaces the installed one,
# and a repository that does not exist yet is created.
#
# Inputs: SERVER, RESTIC_IMAGE, RESTIC, RCLONE_IMAGE and RCLONE (with an off-site repository; else
# RCLONE_IMAGE is empty), AGENT (the rendered agent), CONFIG_DIR, STATE_DIR, SBIN_DIR, UNIT_DIR, TARGETS
# (lines "name method schedule container detail"), PRUNE_SCHEDULE, RANDOM_DELAY (each timer's RandomizedDelaySec=).
# stdin: "key=value" lines. RESTIC_PASSWORD goes to $CONFIG_DIR/password.new and offsite_password to
# $CONFIG_DIR/offsite_password.new, which the agent's init moves over password and offsite_password once
# they open their repositories; role_id/secret_id to $CONFIG_DIR/vault-approle, known_hosts to
# $CONFIG_DIR/known_hosts, offsite_known_hosts to $CONFIG_DIR/offsite_known_hosts, the rest
# (repositories, S3 keys, the sftp command, the off-site rclone remote) to $CONFIG_DIR/repository.env.
# Every one of them is mode 0600, owned by root.
. ./root-lib.sh

# Read first: nothing run before may consume the stdin the credentials arrive on.
step "reading the credentials from stdin"
credentials=$(cat)
printf '%s\n' "$credentials" | grep -q '^RESTIC_PASSWORD[=]' || fail "no RESTIC_PASSWORD on stdin"
printf '%s\n' "$credentials" | grep -q '^RESTIC_REPOSITORY[=]' || fail "no RESTIC_REPOSITORY on stdin"

need_root "to install the backup agent (root-only credentials in $CONFIG_DIR, samarth-backup in $SBIN_DIR, systemd units)"
for tool in docker flock systemctl awk sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing on $SERVER; the backup agent needs docker, flock (util-linux), systemd and coreutils"
done
umask 077
as_root mkdir -p "$CONFIG_DIR" "$STATE_DIR" "$(dirname "$RESTIC")"
as_root chmod 700 "$CONFIG_DIR" "$STATE_DIR"

# replace <file> <mode>: move "$1.new" over "$1" when it differs, so an unchanged file is not touched.
replace() {
  as_root chmod "$2" "$1.new"
  if as_root cmp -s "$1.new" "$1"; then
    as_root rm -f "$1.new"
  else
    as_root mv "$1.new" "$1"
    changed=yes
  fi
}
changed=no

step "copying restic out of $RESTIC_IMAGE"
container=$(docker create "$RESTIC_IMAGE") || fail "cannot create a container from $RESTIC_IMAGE on $SERVER"
# As root: docker cp writes the file as the user running it.
as_root docker cp "$container:/usr/bin/restic" "$RESTIC.new" >/dev/null || { docker rm "$container" >/dev/null; fail "$RESTIC_IMAGE has no /usr/bin/restic"; }
docker rm "$container" >/dev/null
replace "$RESTIC" 755
as_root "$RESTIC" version >&2
if [ -n "$RCLONE_IMAGE" ]; then
  step "copying rclone out of $RCLONE_IMAGE"
  container=$(docker create "$RCLONE_IMAGE") || fail "cannot create a container from $RCLONE_IMAGE on $SERVER"
  as_root docker cp "$container:/usr/local/bin/rclone" "$RCLONE.new" >/dev/null || { docker rm "$container" >/dev/null; fail "$RCLONE_IMAGE has no /usr/local/bin/rclone"; }
  docker rm "$container" >/dev/null
  replace "$RCLONE" 755
  as_root "$RCLONE" version | head -n 1 >&2
fi

step "writing the credentials into $CONFIG_DIR"
printf '%s\n' "$credentials" | grep -E '^[A-Z][A-Z0-9_]*=' | grep -v '^RESTIC_PASSWORD[=]' | as_root tee "$CONFIG_DIR/repository.env.new" >/dev/null
replace "$CONFIG_DIR/repository.env" 600
if printf '%s\n' "$credentials" | grep -q '^secret_id[=]'; then
  printf '%s\n' "$credentials" | grep -E '^(role_id|secret_id)=' | as_root tee "$CONFIG_DIR/vault-approle.new" >/dev/null
  replace "$CONFIG_DIR/vault-approle" 600
fi
for file in known_hosts offsite_known_hosts; do
  if printf '%s\n' "$credentials" | grep -q "^$file="; then
    printf '%s\n' "$credentials" | sed -n "s/^$file=//p" | as_root tee "$CONFIG_DIR/$file.new" >/dev/null
    replace "$CONFIG_DIR/$file" 600
  fi
done

step "installing samarth-backup and samarth-restore in $SBIN_DIR"
printf '#!/bin/sh\n%s\n' "$AGENT" | as_root tee "$SBIN_DIR/samarth-backup.new" >/dev/null
replace "$SBIN_DIR/samarth-backup" 700
as_root ln -sf samarth-backup "$SBIN_DIR/samarth-restore"

step "writing the systemd units in $UNIT_DIR"
as_root tee "$UNIT_DIR/samarth-backup@.service.new" >/dev/null <<UNIT
[Unit]
Description=Samarth backup of %i (restic; samarth-backup status)
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=oneshot
ExecStart=$SBIN_DIR/samarth-backup run %i
Nice=10
IOSchedulingClass=idle
UNIT
replace "$UNIT_DIR/samarth-backup@.service" 644
timers=""
write_timer() { # write_timer <timer name> <unit to start> <OnCalendar>
  as_root tee "$UNIT_DIR/$1.timer.new" >/dev/null <<UNIT
[Unit]
Description=Schedule of $2

[Timer]
OnCalendar=$3
RandomizedDelaySec=$RANDOM_DELAY
Persistent=true
Unit=$2

[Install]
WantedBy=timers.target
UNIT
  replace "$UNIT_DIR/$1.timer" 644
  timers="$timers $1.timer"
}
for name in $(printf '%s\n' "$TARGETS" | awk 'NF { print $1 }'); do
  schedule=$(printf '%s\n' "$TARGETS" | awk -v t="$name" '$1 == t { print $3 }')
  write_timer "samarth-backup-$name" "samarth-backup@$name.service" "$schedule"
done
as_root tee "$UNIT_DIR/samarth-backup-prune.service.new" >/dev/null <<UNIT
[Unit]
Description=Samarth backups: forget, prune and check the repository
After=network-online.target

[Service]
Type=oneshot
ExecStart=$SBIN_DIR/samarth-backup prune
Nice=10
IOSchedulingClass=idle
UNIT
replace "$UNIT_DIR/samarth-backup-prune.service" 644
write_timer samarth-backup-prune samarth-backup-prune.service "$PRUNE_SCHEDULE"

step "removing the timers of targets no longer on $SERVER"
for file in "$UNIT_DIR"/samarth-backup-*.timer; do
  [ -f "$file" ] || continue
  case " $timers " in
    *" ${file##*/} "*) ;;
    *)
      as_root systemctl disable --now "${file##*/}" >/dev/null 2>&1 || true
      as_root rm -f "$file"
      changed=yes
      ;;
  esac
done

step "handing the passwords to the agent in $CONFIG_DIR"
# Not over the installed passwords: the backups stay readable only if a new password is a key of its
# repository before the old one goes, which the agent's init does (and removes these files).
printf '%s\n' "$credentials" | sed -n 's/^RESTIC_PASSWORD[=]//p' | as_root tee "$CONFIG_DIR/password.new" >/dev/null
as_root chmod 600 "$CONFIG_DIR/password.new"
if printf '%s\n' "$credentials" | grep -q '^offsite_password[=]'; then
  printf '%s\n' "$credentials" | sed -n 's/^offsite_password[=]//p' | as_root tee "$CONFIG_DIR/offsite_password.new" >/dev/null
  as_root chmod 600 "$CONFIG_DIR/offsite_password.new"
fi
step "opening the repositories with the new passwords, or creating them"
as_root "$SBIN_DIR/samarth-backup" init >&2

step "enabling the timers"
[ "$changed" = no ] || as_root systemctl daemon-reload
# Only the timers not yet enabled and running: `systemctl enable` reloads systemd's units every time.
pending=""
for timer in $timers; do
  { systemctl is-enabled --quiet "$timer" && systemctl is-active --quiet "$timer"; } || pending="$pending $timer"
done
if [ -n "$pending" ]; then
  # shellcheck disable=SC2086 # one argument per timer
  as_root systemctl enable --now $pending >/dev/null || fail "systemctl could not enable$pending (its message is above)"
fi
echo "backups on $SERVER:$(printf '%s\n' "$TARGETS" | awk 'NF { printf " %s (%s)", $1, $3 }')"
