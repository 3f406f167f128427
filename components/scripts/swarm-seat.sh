# shellcheck shell=sh
# On the master, before a worker joins: remove stale "down" entries of the worker's address, left
# behind by an earlier life of that server, so the node list shows each server once.
# Inputs: MASTER, WORKER, WORKER_IP.
. ./swarm-lib.sh
manager_or_exit "nothing to tidy"
step "looking for stale entries of $WORKER ($WORKER_IP) in the node list"
nodes_at "$WORKER_IP" down
[ -n "$found" ] || echo "$WORKER ($WORKER_IP) has no stale entry in the node list" >&2
for id in $found; do
  docker node rm "$id" >/dev/null
  echo "removed the stale down entry $id of $WORKER ($WORKER_IP)" >&2
done
