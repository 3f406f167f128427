# shellcheck shell=sh
# Installs and starts the systemd timer that runs `samarth-certificates renew` (SERVICE_UNIT,
# TIMER_UNIT: the unit files' text; UNIT: their name without suffix). A failed renewal leaves the
# service failed, so it shows in `systemctl --failed`.
. ./root-lib.sh

step "checking for systemd"
[ -d /run/systemd/system ] || fail "the certificate renewal timer needs systemd as init on this server"
need_root "to install the certificate renewal timer"
step "installing $UNIT.service and $UNIT.timer"
printf '%s' "$SERVICE_UNIT" | as_root tee "/etc/systemd/system/$UNIT.service" >/dev/null
printf '%s' "$TIMER_UNIT" | as_root tee "/etc/systemd/system/$UNIT.timer" >/dev/null
as_root systemctl daemon-reload
step "enabling $UNIT.timer"
as_root systemctl enable --now "$UNIT.timer"
as_root systemctl list-timers --no-pager "$UNIT.timer"
