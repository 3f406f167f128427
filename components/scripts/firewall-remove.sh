# shellcheck shell=sh
# Removes the host firewall (when the stack stops managing it): the jumps to the two chains, the
# chains, the unit UNIT, APPLY_PROGRAM and RULES_FILE. Other rules are not touched.
root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}
step "removing the jumps and chains"
for pair in INPUT:SAMARTH-INPUT DOCKER-USER:SAMARTH-DOCKER-USER; do
  parent=${pair%%:*}
  chain=${pair#*:}
  while root iptables -w -C "$parent" -j "$chain" 2>/dev/null; do root iptables -w -D "$parent" -j "$chain"; done
  if root iptables -w -n -L "$chain" >/dev/null 2>&1; then
    root iptables -w -F "$chain"
    root iptables -w -X "$chain"
  fi
done
step "removing the unit and files"
if [ -d /run/systemd/system ] && [ -f "/etc/systemd/system/$UNIT" ]; then
  root systemctl disable "$UNIT" >/dev/null 2>&1 || true
  root rm -f "/etc/systemd/system/$UNIT"
  root systemctl daemon-reload
fi
root rm -f "$APPLY_PROGRAM" "$RULES_FILE"
