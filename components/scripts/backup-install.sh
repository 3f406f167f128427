# shellcheck shell=sh
# Installs the backup agent on one server, idempotently (components/backups.py runs it on `pulumi up`):
# restic copied out of its pinned image, the root-only credential files from stdin, the agent as
# samarth-backup (and samarth-restore), one systemd timer per target plus the daily prune, then
# initialises the repository when it does not exist yet.
#
# Inputs: SERVER, RESTIC_IMAGE, RESTIC, RCLONE_IMAGE and RCLONE (with an off-site repository; else
# RCLONE_IMAGE is empty), AGENT (the rendered agent), CONFIG_DIR, STATE_DIR, SBIN_DIR, UNIT_DIR, TARGETS
# (lines "name method schedule container detail"), PRUNE_SCHEDULE.
# stdin: "key=value" lines. RESTIC_PASSWORD goes to $CONFIG_DIR/password, role_id/secret_id to
# $CONFIG_DIR/vault-approle, known_hosts to $CONFIG_DIR/known_hosts, offsite_password to
# $CONFIG_DIR/offsite_password, offsite_known_hosts to $CONFIG_DIR/offsite_known_hosts, the rest
# (repositories, S3 keys, the sftp command, the off-site rclone remote) to $CONFIG_DIR/repository.env.
# Every one of them is mode 0600, owned by root.

[ "$(id -u)" -eq 0 ] || fail "the backup agent is installed as root (sudo): its credentials are root-only files"
for tool in docker flock systemctl awk sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing on $SERVER; the backup agent needs docker, flock (util-linux), systemd and coreutils"
done
umask 077
mkdir -p "$CONFIG_DIR" "$STATE_DIR" "$(dirname "$RESTIC")"
chmod 700 "$CONFIG_DIR" "$STATE_DIR"

# replace <file> <mode>: move "$1.new" over "$1" when it differs, so an unchanged file is not touched.
replace() {
  chmod "$2" "$1.new"
  if [ -f "$1" ] && cmp -s "$1.new" "$1"; then
    rm -f "$1.new"
  else
    mv "$1.new" "$1"
    changed=yes
  fi
}
changed=no

step "copying restic out of $RESTIC_IMAGE"
container=$(docker create "$RESTIC_IMAGE") || fail "cannot create a container from $RESTIC_IMAGE on $SERVER"
docker cp "$container:/usr/bin/restic" "$RESTIC.new" >/dev/null || { docker rm "$container" >/dev/null; fail "$RESTIC_IMAGE has no /usr/bin/restic"; }
docker rm "$container" >/dev/null
replace "$RESTIC" 755
"$RESTIC" version >&2
if [ -n "$RCLONE_IMAGE" ]; then
  step "copying rclone out of $RCLONE_IMAGE"
  container=$(docker create "$RCLONE_IMAGE") || fail "cannot create a container from $RCLONE_IMAGE on $SERVER"
  docker cp "$container:/usr/local/bin/rclone" "$RCLONE.new" >/dev/null || { docker rm "$container" >/dev/null; fail "$RCLONE_IMAGE has no /usr/local/bin/rclone"; }
  docker rm "$container" >/dev/null
  replace "$RCLONE" 755
  "$RCLONE" version | head -n 1 >&2
fi

step "writing the credentials from stdin into $CONFIG_DIR"
credentials=$(cat)
printf '%s\n' "$credentials" | sed -n 's/^RESTIC_PASSWORD[=]//p' >"$CONFIG_DIR/password.new"
[ -s "$CONFIG_DIR/password.new" ] || fail "no RESTIC_PASSWORD on stdin"
replace "$CONFIG_DIR/password" 600
printf '%s\n' "$credentials" | grep -E '^[A-Z][A-Z0-9_]*=' | grep -v '^RESTIC_PASSWORD[=]' >"$CONFIG_DIR/repository.env.new" || true
grep -q '^RESTIC_REPOSITORY=' "$CONFIG_DIR/repository.env.new" || fail "no RESTIC_REPOSITORY on stdin"
replace "$CONFIG_DIR/repository.env" 600
if printf '%s\n' "$credentials" | grep -q '^secret_id[=]'; then
  printf '%s\n' "$credentials" | grep -E '^(role_id|secret_id)=' >"$CONFIG_DIR/vault-approle.new"
  replace "$CONFIG_DIR/vault-approle" 600
fi
for file in known_hosts offsite_known_hosts offsite_password; do
  if printf '%s\n' "$credentials" | grep -q "^$file="; then
    printf '%s\n' "$credentials" | sed -n "s/^$file=//p" >"$CONFIG_DIR/$file.new"
    replace "$CONFIG_DIR/$file" 600
  fi
done

step "installing samarth-backup and samarth-restore in $SBIN_DIR"
printf '#!/bin/sh\n%s\n' "$AGENT" >"$SBIN_DIR/samarth-backup.new"
replace "$SBIN_DIR/samarth-backup" 700
ln -sf samarth-backup "$SBIN_DIR/samarth-restore"

step "writing the systemd units in $UNIT_DIR"
cat >"$UNIT_DIR/samarth-backup@.service.new" <<UNIT
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
  cat >"$UNIT_DIR/$1.timer.new" <<UNIT
[Unit]
Description=Schedule of $2

[Timer]
OnCalendar=$3
RandomizedDelaySec=300
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
cat >"$UNIT_DIR/samarth-backup-prune.service.new" <<UNIT
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
      systemctl disable --now "${file##*/}" >/dev/null 2>&1 || true
      rm -f "$file"
      changed=yes
      ;;
  esac
done

step "creating the repository unless it exists"
"$SBIN_DIR/samarth-backup" init >&2

step "enabling the timers"
[ "$changed" = no ] || systemctl daemon-reload
# shellcheck disable=SC2086 # one argument per timer
systemctl enable --now $timers >/dev/null 2>&1 || fail "systemctl could not enable$timers"
echo "backups on $SERVER:$(printf '%s\n' "$TARGETS" | awk 'NF { printf " %s (%s)", $1, $3 }')"
