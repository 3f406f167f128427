# shellcheck shell=sh
# Installs samarth-certificates (acme-certificates.sh, rendered, in CERTIFICATES_SCRIPT) at
# SCRIPT_PATH and the ACME account key read from stdin at ACCOUNT_KEY_FILE, both root-only, then gives every
# name a certificate file (a placeholder until ACME issues one) so Nginx's config can name them.
# Root, or the SSH user with passwordless sudo: the key and certificates are root-only files.
root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

step "checking for root"
[ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null \
  || fail "user $(id -un) needs passwordless sudo on this server to install the certificate files and their renewal timer"
step "installing the ACME account key"
key_dir=$(dirname "$ACCOUNT_KEY_FILE")
root mkdir -p "$key_dir"
root chmod 700 "$ACME_DIR" "$key_dir"
# shellcheck disable=SC2016 # expanded by the inner shell, which gets the path as $1
root sh -c 'umask 077; cat > "$1.new" && mv "$1.new" "$1"' sh "$ACCOUNT_KEY_FILE"
step "installing $SCRIPT_PATH"
root mkdir -p "$(dirname "$SCRIPT_PATH")"
printf '%s' "$CERTIFICATES_SCRIPT" | root tee "$SCRIPT_PATH.new" >/dev/null
root chmod 700 "$SCRIPT_PATH.new"
root mv "$SCRIPT_PATH.new" "$SCRIPT_PATH"
step "placing certificate files for Nginx"
root "$SCRIPT_PATH" placeholders
