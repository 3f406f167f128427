# shellcheck shell=sh
# Create the directory Nginx's config is mounted from, as the SSH user, before Docker would create the
# mount source as root. Inputs: LIVE_DIR.
step "creating $LIVE_DIR"
mkdir -p "$LIVE_DIR"
[ -w "$LIVE_DIR" ] || fail "$LIVE_DIR exists but user $(id -un) cannot write to it"
