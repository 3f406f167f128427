# shellcheck shell=sh
# Runs `samarth-certificates ACTION` as root (or through passwordless sudo) on `pulumi up`.
root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

step "samarth-certificates $ACTION"
root "$SCRIPT_PATH" "$ACTION"
