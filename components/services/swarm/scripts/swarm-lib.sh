# shellcheck shell=sh
# Shared by the swarm scripts (inlined where a script sources it). Reads MASTER: the manager's name.

# The local daemon's swarm state as "<LocalNodeState> <ControlAvailable>": "active true" on a manager.
swarm_state() {
  docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'
}

# Stop quietly (exit 0) when MASTER manages no swarm any more: nothing is left to tidy. A daemon that
# does not answer is an error, not "no swarm".
manager_or_exit() {
  step "checking that $MASTER still manages the swarm"
  manager_state=$(swarm_state) || fail "cannot read the swarm state of $MASTER from its docker daemon"
  if [ "$manager_state" != "active true" ]; then
    echo "$MASTER manages no swarm; $1" >&2
    exit 0
  fi
}

# nodes_at ADDRESS STATE [other]: set $found to the IDs of the nodes advertising ADDRESS whose state is
# STATE (with "other": is not STATE). A node list that cannot be read stops the script: it must never
# pass for "no such node" (a manager whose swarm has lost its leader answers `docker node ls` with an
# error, and a drain that saw no rows would let a worker leave undrained).
nodes_at() {
  found=""
  node_ids=$(docker node ls -q) \
    || fail "cannot read the node list on $MASTER (has the swarm lost its leader? see 'docker node ls' on $MASTER)"
  [ -n "$node_ids" ] || fail "the node list on $MASTER is empty; see 'docker node ls' on $MASTER"
  # shellcheck disable=SC2086 # one argument per node ID
  node_rows=$(docker node inspect --format '{{.ID}},{{.Status.Addr}},{{.Status.State}}' $node_ids) \
    || fail "cannot inspect the nodes of the swarm on $MASTER; see 'docker node ls' on $MASTER"
  for row in $node_rows; do
    id=${row%%,*}; rest=${row#*,}; addr=${rest%%,*}; node_state=${rest#*,}
    [ "$addr" = "$1" ] || continue
    if [ "$node_state" = "$2" ]; then which=same; else which=other; fi
    [ "$which" != "${3:-same}" ] || found="$found $id"
  done
  found=${found# }
}
