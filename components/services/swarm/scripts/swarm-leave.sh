# shellcheck shell=sh
# Make WORKER leave whatever swarm it is in; nothing to do when it is in none. Inputs: WORKER.
. ./swarm-lib.sh
step "asking the docker daemon on $WORKER for its swarm state"
state=$(swarm_state) || fail "cannot read the swarm state of $WORKER from its docker daemon"
case "$state" in
  inactive*)
    echo "$WORKER is in no swarm; nothing to leave" >&2
    ;;
  "active true")
    fail "$WORKER is a manager; refusing to take a manager out of its swarm (demote it first)"
    ;;
  *)
    step "leaving the swarm"
    docker swarm leave --force >/dev/null
    echo "$WORKER left the swarm" >&2
    ;;
esac
