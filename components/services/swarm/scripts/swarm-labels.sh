# shellcheck shell=sh
# On the master: make the labels of NODE exactly LABELS (add, change, remove), touching the node only
# when they differ. For a worker, first remove the stale "down" entries an earlier life of that server
# left at its address, so the node list shows each server once (they never get in the way of a join, so
# this waits until the worker has joined). Inputs: MASTER, NODE, NODE_IP (empty: the master itself),
# LABELS ("key=value" lines, sorted), LABEL_KEYS (the keys, space-separated).
. ./swarm-lib.sh
if [ -z "$NODE_IP" ]; then
  step "reading $NODE's swarm state and node ID"
  state_and_id=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}') \
    || fail "cannot read the swarm state of $MASTER from its docker daemon"
  [ "${state_and_id% *}" = "active true" ] || fail "$MASTER is not a swarm manager; cannot label $NODE"
  id=${state_and_id##* }
else
  # The node list answers only on a manager: nodes_at fails, saying so, anywhere else.
  step "finding $NODE ($NODE_IP) in the node list"
  nodes_at "$NODE_IP" ready
  # shellcheck disable=SC2086 # one positional parameter per node ID
  set -- $found
  [ "$#" -eq 1 ] || fail "expected one ready node advertising $NODE_IP ($NODE) in the swarm of $MASTER, found $#: $found"
  id=$1
  step "removing stale entries of $NODE ($NODE_IP) from the node list"
  for row in $node_rows; do
    stale=${row%%,*}; rest=${row#*,}
    if [ "${rest%%,*}" != "$NODE_IP" ] || [ "${rest#*,}" != "down" ]; then continue; fi
    docker node rm "$stale" >/dev/null
    echo "removed the stale down entry $stale of $NODE ($NODE_IP)" >&2
  done
fi
step "comparing the labels of $NODE"
current=$(docker node inspect --format '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$id")
set --
while IFS= read -r label; do
  [ -n "$label" ] || continue
  printf '%s\n' "$current" | grep -qxF -- "$label" || set -- "$@" --label-add "$label"
done <<LABELS_END
$LABELS
LABELS_END
for key in $(printf '%s\n' "$current" | sed -n 's/=.*//p'); do
  case " $LABEL_KEYS " in *" $key "*) ;; *) set -- "$@" --label-rm "$key" ;; esac
done
if [ "$#" -eq 0 ]; then
  echo "$NODE already carries its labels" >&2
else
  step "updating the labels of $NODE"
  docker node update "$@" "$id" >/dev/null
  echo "$NODE: labels updated ($*)" >&2
fi
