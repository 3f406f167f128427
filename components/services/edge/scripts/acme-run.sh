# shellcheck shell=sh
# Runs `samarth-certificates ACTION [NAME...]` as root (components/shared/scripts/root-lib.sh) on `pulumi up`.
# Inputs: SERVER, SCRIPT_PATH, ACTION, NAMES (space-separated host names, or empty: every name).
. ./root-lib.sh

step "samarth-certificates $ACTION $NAMES"
need_root "to run samarth-certificates $ACTION"
# shellcheck disable=SC2086 # NAMES is a list of host names (no spaces or globs in a host name).
as_root "$SCRIPT_PATH" "$ACTION" $NAMES
