# shellcheck shell=sh
# On the master, after the worker left: remove its entries from the node list. The worker's own leave
# succeeded just before (Pulumi deletes the join first), so an entry still shown as up is the one that
# left, not yet timed out by the swarm's heartbeats: it is removed at once (--force) when it is drained
# (the drain ran before the leave), instead of waiting seconds for the heartbeat to expire. An entry
# still active (never drained) is refused.
# Inputs: MASTER, WORKER, WORKER_IP.
. ./swarm-lib.sh
manager_or_exit "no entry of $WORKER to remove"
step "finding $WORKER ($WORKER_IP) in the node list"
node_ids=$(docker node ls -q) \
  || fail "cannot read the node list on $MASTER (has the swarm lost its leader? see 'docker node ls' on $MASTER)"
# shellcheck disable=SC2086 # one argument per node ID
node_rows=$(docker node inspect --format '{{.ID}},{{.Status.Addr}},{{.Status.State}},{{.Spec.Availability}}' $node_ids) \
  || fail "cannot inspect the nodes of the swarm on $MASTER; see 'docker node ls' on $MASTER"
removed=0
for row in $node_rows; do
  id=${row%%,*}; rest=${row#*,}; addr=${rest%%,*}; rest=${rest#*,}; node_state=${rest%%,*}; availability=${rest#*,}
  [ "$addr" = "$WORKER_IP" ] || continue
  if [ "$node_state" != "down" ] && [ "$availability" != "drain" ]; then
    fail "$WORKER ($WORKER_IP) is still an active node ($id, $availability) after it left; drain it ('docker node update --availability drain $id') and run again"
  fi
  step "removing node $id of $WORKER ($WORKER_IP)"
  docker node rm --force "$id" >/dev/null
  echo "removed node $id of $WORKER ($WORKER_IP)" >&2
  removed=$((removed + 1))
done
[ "$removed" -gt 0 ] || echo "$WORKER ($WORKER_IP) is not in the node list; nothing to remove" >&2
