# shellcheck shell=sh
# The SSH key a server's backup agent uses for its SFTP repository: created on the server once, the
# private half never leaves it (root-only, in $CONFIG_DIR); prints the public half.
# Inputs: SERVER, CONFIG_DIR.
. ./root-lib.sh

need_root "to keep the backup SSH key in $CONFIG_DIR (root-only)"
umask 077
as_root mkdir -p "$CONFIG_DIR"
as_root chmod 700 "$CONFIG_DIR"
if ! as_root test -s "$CONFIG_DIR/ssh_key"; then
  step "creating the backup SSH key of $SERVER"
  as_root ssh-keygen -q -t ed25519 -N "" -C "samarth-backup@$SERVER" -f "$CONFIG_DIR/ssh_key" </dev/null
fi
as_root cat "$CONFIG_DIR/ssh_key.pub"
