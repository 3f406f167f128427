# shellcheck shell=sh
# Installs samarth-certificates (acme-certificates.sh, rendered, in CERTIFICATES_SCRIPT) at
# SCRIPT_PATH and the ACME account key read from stdin at ACCOUNT_KEY_FILE, both root-only, then gives every
# name a certificate file (a placeholder until ACME issues one) so Nginx's config can name them.
. ./root-lib.sh

step "checking for root"
need_root "to install the ACME account key and samarth-certificates (root-only files)"
step "installing the ACME account key"
key_dir=$(dirname "$ACCOUNT_KEY_FILE")
as_root mkdir -p "$key_dir"
as_root chmod 700 "$ACME_DIR" "$key_dir"
# shellcheck disable=SC2016 # expanded by the inner shell, which gets the path as $1
as_root sh -c 'umask 077; cat > "$1.new" && mv "$1.new" "$1"' sh "$ACCOUNT_KEY_FILE"
step "installing $SCRIPT_PATH"
as_root mkdir -p "$(dirname "$SCRIPT_PATH")"
printf '%s' "$CERTIFICATES_SCRIPT" | as_root tee "$SCRIPT_PATH.new" >/dev/null
as_root chmod 700 "$SCRIPT_PATH.new"
as_root mv "$SCRIPT_PATH.new" "$SCRIPT_PATH"
step "placing certificate files for Nginx"
as_root "$SCRIPT_PATH" placeholders
