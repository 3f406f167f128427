# shellcheck shell=sh
# Removes the host firewall (when the stack stops managing it): the jumps to the two chains, the
# chains, the unit UNIT, APPLY_PROGRAM and RULES_FILE. Other rules are not touched.
. ./root-lib.sh
step "checking for root"
need_root "to remove the host firewall"
step "removing the jumps and chains"
for pair in INPUT:SAMARTH-INPUT DOCKER-USER:SAMARTH-DOCKER-USER; do
  parent=${pair%%:*}
  chain=${pair#*:}
  while as_root iptables -w -C "$parent" -j "$chain" 2>/dev/null; do as_root iptables -w -D "$parent" -j "$chain"; done
  if as_root iptables -w -n -L "$chain" >/dev/null 2>&1; then
    as_root iptables -w -F "$chain"
    as_root iptables -w -X "$chain"
  fi
done
step "removing the unit and files"
if [ -d /run/systemd/system ] && [ -f "/etc/systemd/system/$UNIT" ]; then
  as_root systemctl disable --now "$UNIT" >/dev/null 2>&1 || true
  as_root rm -f "/etc/systemd/system/$UNIT"
  as_root systemctl daemon-reload
fi
as_root rm -f "$APPLY_PROGRAM" "$RULES_FILE"
