# shellcheck shell=sh
# An SFTP repository for another server's backups: a system user owning $REPOSITORY_ROOT/$CLIENT, and
# the client's key in its authorized_keys, restricted to the SFTP server in that directory, from the
# client's private IP only. Prints this server's ed25519 host key as a known_hosts line for the client.
# Inputs: SERVER, SERVER_IP, CLIENT, CLIENT_IP, CLIENT_PUBLIC_KEY (public), USER_NAME, REPOSITORY_ROOT.

[ "$(id -u)" -eq 0 ] || fail "run as root (it creates a system user)"
step "finding the SFTP server program"
sftp_server=""
for candidate in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server; do
  [ -x "$candidate" ] && sftp_server=$candidate && break
done
[ -n "$sftp_server" ] || fail "no sftp-server on $SERVER: install openssh-sftp-server"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  step "creating system user $USER_NAME"
  useradd --system --home-dir "$REPOSITORY_ROOT" --shell /bin/sh "$USER_NAME"
fi
step "preparing $REPOSITORY_ROOT/$CLIENT"
install -d -m 0700 -o "$USER_NAME" "$REPOSITORY_ROOT" "$REPOSITORY_ROOT/$CLIENT"
install -d -m 0700 -o "$USER_NAME" "$REPOSITORY_ROOT/.ssh"
entry="restrict,from=\"$CLIENT_IP\",command=\"$sftp_server -d $REPOSITORY_ROOT/$CLIENT\" $CLIENT_PUBLIC_KEY"
keys="$REPOSITORY_ROOT/.ssh/authorized_keys"
touch "$keys"
# One line per client, replaced when its key changes.
grep -v " samarth-backup@$CLIENT\$" "$keys" >"$keys.new" || true
printf '%s\n' "$entry" >>"$keys.new"
chown "$USER_NAME" "$keys.new"
chmod 600 "$keys.new"
mv "$keys.new" "$keys"
step "reading the host key of $SERVER"
[ -r /etc/ssh/ssh_host_ed25519_key.pub ] || fail "$SERVER has no /etc/ssh/ssh_host_ed25519_key.pub"
printf '%s %s\n' "$SERVER_IP" "$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
