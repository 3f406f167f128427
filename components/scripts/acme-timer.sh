# shellcheck shell=sh
# Installs and starts the systemd timer that runs `samarth-certificates renew` (SERVICE_UNIT,
# TIMER_UNIT: the unit files' text; UNIT: their name without suffix). A failed renewal leaves the
# service failed, so it shows in `systemctl --failed`.
root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

step "checking for systemd"
[ -d /run/systemd/system ] || fail "the certificate renewal timer needs systemd as init on this server"
[ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null \
  || fail "user $(id -un) needs passwordless sudo on this server to install the renewal timer"
step "installing $UNIT.service and $UNIT.timer"
printf '%s' "$SERVICE_UNIT" | root tee "/etc/systemd/system/$UNIT.service" >/dev/null
printf '%s' "$TIMER_UNIT" | root tee "/etc/systemd/system/$UNIT.timer" >/dev/null
root systemctl daemon-reload
step "enabling $UNIT.timer"
root systemctl enable --now "$UNIT.timer"
root systemctl list-timers --no-pager "$UNIT.timer"
