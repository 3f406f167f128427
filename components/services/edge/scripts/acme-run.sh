# shellcheck shell=sh
# Runs `samarth-certificates ACTION` as root (components/shared/scripts/root-lib.sh) on `pulumi up`.
. ./root-lib.sh

step "samarth-certificates $ACTION"
need_root "to run samarth-certificates $ACTION"
as_root "$SCRIPT_PATH" "$ACTION"
