# shellcheck shell=sh
# Fail, saying how to fix it, when a kernel setting an engine needs is below its minimum. Read-only:
# the operator decides how the host is tuned, this only refuses to start what would crash.
# Inputs: SERVER, MINIMUMS ("<key> <minimum>" lines).
while read -r key minimum; do
  [ -n "$key" ] || continue
  step "reading $key"
  value=$(sysctl -n "$key") || fail "cannot read $key on $SERVER"
  [ "$value" -ge "$minimum" ] || fail "$key is $value on $SERVER, at least $minimum is needed: run 'sudo sysctl -w $key=$minimum' and persist it in /etc/sysctl.d/99-samarth.conf"
done <<MINIMUMS_END
$MINIMUMS
MINIMUMS_END
echo "$SERVER: kernel settings for the databases are in place"
