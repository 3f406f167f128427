# shellcheck shell=sh
# On the master, before a worker leaves: drain it and wait until its tasks have stopped. A node list
# that cannot be read stops the drain (and so the worker's leave, which depends on it).
# Inputs: MASTER, WORKER, WORKER_IP, DRAIN_TIMEOUT_S.
. ./swarm-lib.sh
manager_or_exit "nothing to drain on $WORKER"
step "finding $WORKER ($WORKER_IP) in the node list"
nodes_at "$WORKER_IP" down other
if [ -z "$found" ]; then
  echo "$WORKER ($WORKER_IP) is not an active node of the swarm; nothing to drain" >&2
  exit 0
fi
for id in $found; do
  step "draining $WORKER (node $id)"
  docker node update --availability drain "$id" >/dev/null
  # Draining turns every task's desired state to shutdown at once; wait until they have stopped
  # (a task's history stays listed, in one of the end states).
  # Polled five times a second, so the removal takes as long as the tasks take to stop, not a second more.
  deadline=$(($(date +%s) + DRAIN_TIMEOUT_S))
  while docker node ps --format '{{.CurrentState}}' "$id" | grep -qvE '^(Shutdown|Failed|Complete|Rejected|Orphaned|Remove)'; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$WORKER still runs tasks $DRAIN_TIMEOUT_S s after it was drained"
    sleep 0.2
  done
  echo "$WORKER drained" >&2
done
