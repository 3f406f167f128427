# shellcheck shell=sh
# On the master, after the worker left: wait until it shows as down, then remove its entry.
# Inputs: MASTER, WORKER, WORKER_IP, LEAVE_TIMEOUT_S.
. ./swarm-lib.sh
manager_or_exit "no entry of $WORKER to remove"
step "waiting for $WORKER ($WORKER_IP) to show as down after leaving"
waited=0
while :; do
  nodes_at "$WORKER_IP" down other
  [ -z "$found" ] && break
  [ "$waited" -lt "$LEAVE_TIMEOUT_S" ] \
    || fail "$WORKER ($WORKER_IP) is still up in the node list $LEAVE_TIMEOUT_S s after it should have left: node $found"
  sleep 1
  waited=$((waited + 1))
done
step "removing $WORKER ($WORKER_IP) from the node list"
nodes_at "$WORKER_IP" down
[ -n "$found" ] || echo "$WORKER ($WORKER_IP) is not in the node list; nothing to remove" >&2
for id in $found; do
  docker node rm "$id" >/dev/null
  echo "removed node $id of $WORKER ($WORKER_IP)" >&2
done
