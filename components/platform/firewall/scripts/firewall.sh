# shellcheck shell=sh
# Installs the host firewall of SERVER (components/platform/firewall/component.py): the rules (RULES) at RULES_FILE, the
# program that loads them (APPLY_TEXT, rendered firewall-apply.sh) at APPLY_PROGRAM and, where systemd
# runs, the unit UNIT (UNIT_TEXT) that loads them again at boot and after every dockerd start.
# Refuses rules that would lock this SSH session's address out of SSH_PORT (SSH_SOURCES, space-separated
# networks). New rules are checked before anything changes and become RULES_FILE only once applied.
. ./root-lib.sh

# 0 when IPv4 address $1 is inside one of the networks in SSH_SOURCES.
ssh_allows() {
  printf '%s\n' "$SSH_SOURCES" | tr ' ' '\n' | awk -v ip="$1" '
    function number(a,  o) { split(a, o, "."); return ((o[1] * 256 + o[2]) * 256 + o[3]) * 256 + o[4] }
    /^[0-9.]+(\/[0-9]+)?$/ {
      split($0, n, "/"); bits = (n[2] == "" ? 32 : n[2]); size = 2 ^ (32 - bits)
      if (int(number(ip) / size) == int(number(n[1]) / size)) found = 1
    }
    END { exit !found }'
}

step "checking for root"
need_root "to install the host firewall"
# In root's PATH: a user's may lack /usr/sbin.
as_root sh -c 'command -v iptables-restore' >/dev/null 2>&1 || fail "iptables-restore is not installed on $SERVER: apt-get install iptables"

step "checking that this session's address keeps SSH"
client=${SSH_CONNECTION%% *}
case "$client" in
  "" | *:*) ;;  # not over SSH, or IPv6 (the rules are IPv4)
  *) ssh_allows "$client" || fail "the new rules allow SSH (port $SSH_PORT) only from $SSH_SOURCES, not from this session's address $client: add it to firewall.operators or firewall.pulumiFrom; nothing was changed" ;;
esac

step "installing $APPLY_PROGRAM"
as_root mkdir -p "$(dirname "$APPLY_PROGRAM")" "$(dirname "$RULES_FILE")"
printf '%s' "$APPLY_TEXT" | as_root tee "$APPLY_PROGRAM.new" >/dev/null
as_root chmod 700 "$APPLY_PROGRAM.new"
as_root mv "$APPLY_PROGRAM.new" "$APPLY_PROGRAM"

step "checking the new rules"
printf '%s' "$RULES" | as_root tee "$RULES_FILE.new" >/dev/null
as_root sh "$APPLY_PROGRAM" "$RULES_FILE.new" --test

step "applying the new rules"
as_root sh "$APPLY_PROGRAM" "$RULES_FILE.new"
as_root mv "$RULES_FILE.new" "$RULES_FILE"

if [ -d /run/systemd/system ]; then
  step "installing the systemd unit $UNIT"
  printf '%s' "$UNIT_TEXT" | as_root tee "/etc/systemd/system/$UNIT" >/dev/null
  as_root systemctl daemon-reload
  as_root systemctl enable "$UNIT" >/dev/null 2>&1 || fail "systemctl enable $UNIT failed: see systemctl status $UNIT"
  # Started now, not first at the next boot: a unit that cannot load the installed files shows today.
  as_root systemctl restart "$UNIT" || fail "$UNIT failed to load $RULES_FILE: see journalctl -u $UNIT"
fi
echo "firewall on $SERVER: $(as_root grep -c -- '^-A' "$RULES_FILE") rules, sha256 $(as_root sha256sum "$RULES_FILE" | cut -c1-12)"
