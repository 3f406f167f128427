# shellcheck shell=sh
# Rotates Vault's audit file: a logrotate rule (LOGROTATE_CONF) for AUDIT_FILE in the Docker volume
# VOLUME, rotated when logrotate finds it larger than MAX_SIZE, KEEP compressed files kept. After a
# rotation logrotate sends SIGHUP to the container CONTAINER: Vault (and OpenBao) then close and reopen
# their file audit devices, so new lines go to a new file. Idempotent: the rule is rewritten only when it
# changed. logrotate runs daily (its cron job or timer).
. ./root-lib.sh
step "checking for root and logrotate"
need_root "to install $LOGROTATE_CONF"
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] \
  || fail "logrotate is not installed: apt-get install logrotate (Vault's audit file would grow until the disk is full)"
step "finding volume $VOLUME"
mountpoint=$(docker volume inspect --format '{{.Mountpoint}}' "$VOLUME") \
  || fail "docker volume $VOLUME does not exist: is Vault deployed on this server?"
docker_cli=$(command -v docker) || fail "docker is not installed"
step "writing $LOGROTATE_CONF"
rule=$(cat <<RULE
# Written by samarth-infra (components/vault.py): Vault's audit file, reopened on SIGHUP.
"$mountpoint/$AUDIT_FILE" {
    size $MAX_SIZE
    rotate $KEEP
    compress
    delaycompress
    missingok
    notifempty
    nocreate
    postrotate
        $docker_cli kill --signal=HUP $CONTAINER >/dev/null 2>&1 || true
    endscript
}
RULE
)
if [ "$(as_root cat "$LOGROTATE_CONF" 2>/dev/null || true)" = "$rule" ]; then
  echo "vault audit rotation: $LOGROTATE_CONF is up to date"
  exit 0
fi
as_root mkdir -p "$(dirname "$LOGROTATE_CONF")"
printf '%s\n' "$rule" | as_root tee "$LOGROTATE_CONF.samarth-new" >/dev/null
as_root chmod 644 "$LOGROTATE_CONF.samarth-new"
as_root mv "$LOGROTATE_CONF.samarth-new" "$LOGROTATE_CONF"
step "checking the rule with logrotate --debug"
as_root logrotate --debug "$LOGROTATE_CONF" >/dev/null 2>&1 || fail "logrotate rejects $LOGROTATE_CONF: see logrotate --debug $LOGROTATE_CONF"
echo "vault audit rotation: $LOGROTATE_CONF written ($AUDIT_FILE over $MAX_SIZE, $KEEP kept)"
