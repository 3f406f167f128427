# shellcheck shell=sh
# Makes LOG_DRIVER with LOG_OPTS (a JSON object) the Docker daemon's default log configuration in
# DAEMON_JSON, keeping every other setting there, so every container created from now on has bounded
# logs: those of Sentry's and PostHog's compose projects and swarm tasks too. REGISTRY_MIRRORS (a JSON
# list) becomes its "registry-mirrors" (where it asks for Docker Hub images first); an empty list removes
# the key, which the program owns. Idempotent: an unchanged
# file is not rewritten and the daemon is not restarted. After a change dockerd must restart to use it
# (log settings are not reloadable): done here with systemctl when RESTART is "yes"; containers with a
# restart policy come back, and keep the log settings they were created with until recreated.
# Needs python3 to merge the JSON.
. ./root-lib.sh
step "checking for root and python3"
need_root "to write $DAEMON_JSON and restart dockerd"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed on $SERVER (needed to merge $DAEMON_JSON): apt-get install python3"

step "merging the log defaults and registry mirrors into $DAEMON_JSON"
current=$(as_root cat "$DAEMON_JSON" 2>/dev/null || true)
# shellcheck disable=SC2016 # a python program, not shell
merged=$(printf '%s' "$current" | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    document = json.loads(text) if text.strip() else {}
except ValueError as error:
    sys.exit(f"{sys.argv[1]} is not valid JSON ({error}); fix it by hand first")
if not isinstance(document, dict):
    sys.exit(f"{sys.argv[1]} is not a JSON object; fix it by hand first")
document["log-driver"] = sys.argv[2]
document["log-opts"] = json.loads(sys.argv[3])
mirrors = json.loads(sys.argv[4])
if mirrors:
    document["registry-mirrors"] = mirrors
else:
    document.pop("registry-mirrors", None)
print(json.dumps(document, indent=2, sort_keys=True))
' "$DAEMON_JSON" "$LOG_DRIVER" "$LOG_OPTS" "$REGISTRY_MIRRORS") || fail "could not merge the log defaults into $DAEMON_JSON"

if [ "$merged" = "$current" ]; then
  echo "docker log defaults on $SERVER: $LOG_DRIVER $LOG_OPTS, registry mirrors $REGISTRY_MIRRORS already in $DAEMON_JSON"
  exit 0
fi
step "writing $DAEMON_JSON"
as_root mkdir -p "$(dirname "$DAEMON_JSON")"
printf '%s\n' "$merged" | as_root tee "$DAEMON_JSON.samarth-new" >/dev/null
as_root mv "$DAEMON_JSON.samarth-new" "$DAEMON_JSON"
if [ "$RESTART" = "yes" ] && [ -d /run/systemd/system ]; then
  step "restarting dockerd to use the new defaults"
  as_root systemctl restart docker || fail "systemctl restart docker failed: see journalctl -u docker"
  echo "docker log defaults on $SERVER: $LOG_DRIVER $LOG_OPTS, registry mirrors $REGISTRY_MIRRORS written to $DAEMON_JSON; dockerd restarted"
else
  echo "docker log defaults on $SERVER: $LOG_DRIVER $LOG_OPTS, registry mirrors $REGISTRY_MIRRORS written to $DAEMON_JSON; dockerd uses them from its next start"
fi
