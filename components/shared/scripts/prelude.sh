# shellcheck shell=sh
# Prepended to every remote script (after its generated variable header): every script fails the
# same, legible way. On any failure the EXIT trap names the script and the step it was in, then the
# command exits non-zero, which is what `pulumi up` shows the operator.
set -eu
# A non-root login's PATH on Debian has no sbin directory, where sysctl, iptables and useradd live.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH
SAMARTH_STEP="starting"
step() { SAMARTH_STEP="$1"; }
fail() { echo "$SAMARTH_SCRIPT: $*" >&2; SAMARTH_STEP=""; exit 1; }
trap 'SAMARTH_RC=$?; if [ "$SAMARTH_RC" -ne 0 ] && [ -n "$SAMARTH_STEP" ]; then echo "$SAMARTH_SCRIPT: failed while $SAMARTH_STEP (exit $SAMARTH_RC)" >&2; fi' EXIT
