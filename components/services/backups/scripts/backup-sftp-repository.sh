# shellcheck shell=sh
# An SFTP repository for another server's backups: a system user (no shell) chrooted by sshd into
# $REPOSITORY_ROOT, where it owns only $CLIENT's directory, and may do nothing but SFTP (sshd's
# internal-sftp, forced both by an sshd drop-in and by the key's options); the client's key in a
# root-owned authorized_keys, usable only from the client's private IP. Prints this server's ed25519
# host key as a known_hosts line for the client.
# Inputs: SERVER, SERVER_IP, SERVER_PORT (this server's sshd), CLIENT, CLIENT_IP, CLIENT_PUBLIC_KEY,
# USER_NAME, REPOSITORY_ROOT (the chroot: it and every parent must be root-owned, not writable by
# others), SSHD_CONFIG (sshd's configuration file) and SSHD_DROP_IN_DIR (a directory it includes:
# /etc/ssh/sshd_config.d on Debian and Ubuntu).

. ./root-lib.sh

need_root "to create the SFTP account $USER_NAME and confine it in sshd's configuration"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  step "creating system user $USER_NAME"
  as_root useradd --system --home-dir "$REPOSITORY_ROOT" --shell /usr/sbin/nologin "$USER_NAME"
fi
[ "$(getent passwd "$USER_NAME" | cut -d: -f7)" = /usr/sbin/nologin ] || as_root usermod --shell /usr/sbin/nologin "$USER_NAME"
# No password, but not locked ('!'): without PAM, sshd refuses a locked account even a key login.
[ "$(as_root getent shadow "$USER_NAME" | cut -d: -f2)" = '*' ] || as_root usermod --password '*' "$USER_NAME"

step "preparing $REPOSITORY_ROOT/$CLIENT (the chroot is root's, the client's directory $USER_NAME's)"
as_root install -d -m 0755 -o root -g root "$REPOSITORY_ROOT" "$REPOSITORY_ROOT/.ssh"
as_root install -d -m 0700 -o "$USER_NAME" "$REPOSITORY_ROOT/$CLIENT"
directory=$REPOSITORY_ROOT
while [ "$directory" != / ]; do
  # sshd refuses a chroot with a parent that is not root's or that others may write to.
  if [ "$(stat -c %u "$directory")" != 0 ] || [ "$(($(stat -c %#a "$directory") & 022))" -ne 0 ]; then
    fail "$directory must be owned by root and not writable by group or others: sshd chroots $USER_NAME into $REPOSITORY_ROOT"
  fi
  directory=$(dirname "$directory")
done

step "writing the key of $CLIENT into $REPOSITORY_ROOT/.ssh/authorized_keys"
keys="$REPOSITORY_ROOT/.ssh/authorized_keys"
entry="restrict,from=\"$CLIENT_IP\",command=\"internal-sftp\" $CLIENT_PUBLIC_KEY"
as_root touch "$keys"
# One line per client, replaced when its key changes; root's file, so the account cannot change it.
{
  grep -v " samarth-backup@$CLIENT\$" "$keys" || true
  printf '%s\n' "$entry"
} | as_root tee "$keys.new" >/dev/null
as_root chown root:root "$keys.new"
as_root chmod 644 "$keys.new"
as_root mv "$keys.new" "$keys"

step "confining $USER_NAME in sshd ($SSHD_DROP_IN_DIR)"
sshd=$(command -v sshd || echo /usr/sbin/sshd)
[ -d "$SSHD_DROP_IN_DIR" ] || fail "$SSHD_DROP_IN_DIR does not exist: sshd_config must include it (Include $SSHD_DROP_IN_DIR/*.conf)"
drop_in="$SSHD_DROP_IN_DIR/samarth-backup-$USER_NAME.conf"
as_root tee "$drop_in.new" >/dev/null <<CONF
# Written by samarth-infra (backup-sftp-repository.sh): $USER_NAME may only use SFTP, inside $REPOSITORY_ROOT.
Match User $USER_NAME
    ChrootDirectory $REPOSITORY_ROOT
    ForceCommand internal-sftp
    AuthorizedKeysFile $REPOSITORY_ROOT/.ssh/authorized_keys
    PasswordAuthentication no
    PermitTTY no
    AllowTcpForwarding no
    AllowAgentForwarding no
    AllowStreamLocalForwarding no
    X11Forwarding no
CONF
if as_root cmp -s "$drop_in.new" "$drop_in"; then
  as_root rm -f "$drop_in.new"
else
  as_root mv "$drop_in.new" "$drop_in"
  as_root chmod 644 "$drop_in"
  step "checking sshd's configuration with the drop-in"
  if ! as_root "$sshd" -t -f "$SSHD_CONFIG" >&2; then
    as_root rm -f "$drop_in"
    fail "sshd -t refuses the configuration with $drop_in (removed again); see above"
  fi
  step "reloading sshd"
  as_root systemctl reload ssh 2>/dev/null || as_root systemctl reload sshd \
    || fail "could not reload sshd (systemctl reload ssh|sshd): $USER_NAME is not confined until it is"
fi

step "checking that sshd confines $USER_NAME coming from $CLIENT_IP"
effective=$(as_root "$sshd" -T -f "$SSHD_CONFIG" -C "user=$USER_NAME,addr=$CLIENT_IP,host=$CLIENT,laddr=$SERVER_IP,lport=$SERVER_PORT")
if ! printf '%s\n' "$effective" | grep -qx "chrootdirectory $REPOSITORY_ROOT" \
  || ! printf '%s\n' "$effective" | grep -qx "forcecommand internal-sftp"; then
  fail "sshd's configuration does not apply $drop_in to $USER_NAME (an earlier Match block, or no Include of $SSHD_DROP_IN_DIR in $SSHD_CONFIG?)"
fi

step "reading the host key of $SERVER"
host_key=$(printf '%s\n' "$effective" | awk '$1 == "hostkey" && $2 ~ /ed25519/ { print $2 ".pub"; exit }')
[ -r "${host_key:-/nonexistent}" ] || fail "$SERVER's sshd has no ed25519 host key (HostKey in $SSHD_CONFIG)"
if [ "$SERVER_PORT" = 22 ]; then known=$SERVER_IP; else known="[$SERVER_IP]:$SERVER_PORT"; fi
printf '%s %s\n' "$known" "$(cut -d' ' -f1,2 "$host_key")"
