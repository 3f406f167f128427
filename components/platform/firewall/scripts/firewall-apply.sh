# shellcheck shell=sh
# samarth-firewall-apply: loads the host firewall (components/platform/firewall/component.py, docs/firewall.md) from the
# rules file given as $1 (default RULES_FILE): the `-A` lines of the SAMARTH-INPUT and
# SAMARTH-DOCKER-USER chains. One `iptables-restore --noflush` transaction declares (and so empties)
# both chains, adds the rules and, where missing, the jumps at the top of INPUT and DOCKER-USER: every
# other chain is left as it is, and a rule the kernel refuses leaves the previous rules in place.
# With --test as $2 the transaction is only checked. Run as root: by `pulumi up` and by the systemd
# unit after every start of dockerd.
rules=${1:-$RULES_FILE}
mode=${2:-apply}
step "reading $rules"
[ -r "$rules" ] || fail "$rules does not exist: run \`pulumi up\` to write it"
command -v iptables-restore >/dev/null 2>&1 || fail "iptables-restore is not installed: apt-get install iptables"
payload=$(mktemp)
trap 'rm -f "$payload"' EXIT
step "building the transaction"
{
  echo "*filter"
  echo ":SAMARTH-INPUT - [0:0]"
  echo ":SAMARTH-DOCKER-USER - [0:0]"
  # Docker creates DOCKER-USER and keeps what is in it; before dockerd first ran it may not exist yet.
  iptables -w -n -L DOCKER-USER >/dev/null 2>&1 || echo ":DOCKER-USER - [0:0]"
  cat "$rules"
  iptables -w -C INPUT -j SAMARTH-INPUT 2>/dev/null || echo "-I INPUT 1 -j SAMARTH-INPUT"
  iptables -w -C DOCKER-USER -j SAMARTH-DOCKER-USER 2>/dev/null || echo "-I DOCKER-USER 1 -j SAMARTH-DOCKER-USER"
  echo "COMMIT"
} > "$payload"
if [ "$mode" = "--test" ]; then
  step "checking the rules with iptables-restore --test"
  iptables-restore -w --noflush --test < "$payload" || fail "iptables-restore refused the rules in $rules; nothing was changed"
  exit 0
fi
step "applying the rules"
iptables-restore -w --noflush < "$payload" || fail "iptables-restore refused the rules in $rules; the previous rules are still in place"
echo "samarth-firewall: $(grep -c -- '^-A' "$rules") rules from $rules in place"
