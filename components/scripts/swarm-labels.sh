# shellcheck shell=sh
# On the master: make the labels of NODE exactly LABELS (add, change, remove), touching the node only
# when they differ. Inputs: MASTER, NODE, NODE_IP (empty: the master itself), LABELS ("key=value" lines,
# sorted), LABEL_KEYS (the keys, space-separated).
. ./swarm-lib.sh
step "checking that $MASTER manages a swarm"
[ "$(swarm_state)" = "active true" ] || fail "$MASTER is not a swarm manager; cannot label $NODE"
if [ -z "$NODE_IP" ]; then
  step "reading $NODE's own node ID"
  id=$(docker info --format '{{.Swarm.NodeID}}')
else
  step "finding $NODE ($NODE_IP) in the node list"
  nodes_at "$NODE_IP" ready
  # shellcheck disable=SC2086 # one positional parameter per node ID
  set -- $found
  [ "$#" -eq 1 ] || fail "expected one ready node advertising $NODE_IP ($NODE) in the swarm of $MASTER, found $#: $found"
  id=$1
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
