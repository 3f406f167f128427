# shellcheck shell=sh
# The SSH key a server's backup agent uses for its SFTP repository: created on the server once, the
# private half never leaves it (root-only, in $CONFIG_DIR); prints the public half.
# Inputs: SERVER, CONFIG_DIR.

[ "$(id -u)" -eq 0 ] || fail "run as root (the key is a root-only file)"
umask 077
mkdir -p "$CONFIG_DIR"
if [ ! -s "$CONFIG_DIR/ssh_key" ]; then
  step "creating the backup SSH key of $SERVER"
  ssh-keygen -q -t ed25519 -N "" -C "samarth-backup@$SERVER" -f "$CONFIG_DIR/ssh_key" </dev/null
fi
cat "$CONFIG_DIR/ssh_key.pub"
