# shellcheck shell=sh
# Join WORKER to the swarm of MASTER with the worker token read from stdin; a no-op when it is already
# a worker of that swarm, an error when it belongs to another one.
# Inputs: WORKER (also NODE), ENCRYPT_OVERLAY, PROC_DIR, WORKER_IP, MASTER, MANAGER_ADDRESS (the master's IP:port).
. ./swarm-lib.sh
. ./overlay-kernel.sh
step "asking the docker daemon on $WORKER for its swarm state"
state=$(swarm_state) || fail "cannot read the swarm state of $WORKER from its docker daemon"
case "$state" in
  "active false")
    managers=$(docker info --format '{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}')
    managers=${managers% }
    case " $managers " in
      *" $MANAGER_ADDRESS "*)
        echo "$WORKER has already joined the swarm of $MASTER ($MANAGER_ADDRESS); nothing to do" >&2
        exit 0
        ;;
    esac
    fail "$WORKER already belongs to another swarm (managers: $managers), not to the swarm of $MASTER ($MANAGER_ADDRESS); run 'docker swarm leave' on $WORKER first"
    ;;
  "active true")
    fail "$WORKER is a manager of a swarm advertised on $(docker info --format '{{.Swarm.NodeAddr}}'); it must be a worker of $MASTER's swarm: run 'docker swarm leave --force' on $WORKER first"
    ;;
  pending*)
    echo "$WORKER has an unfinished join from an earlier attempt; abandoning it" >&2
    docker swarm leave --force >/dev/null
    ;;
  "inactive false") ;;
  locked*)
    fail "$WORKER is in a locked swarm; unlock it with 'docker swarm unlock' on $WORKER"
    ;;
  *)
    fail "$WORKER reports swarm state '$state'; see 'docker info' on $WORKER"
    ;;
esac
step "reading the worker join token from stdin"
token=""
IFS= read -r token || [ -n "$token" ] || fail "no worker join token on stdin"
step "joining the swarm of $MASTER at $MANAGER_ADDRESS"
# What `docker swarm join` sends, but through the Engine API on the daemon's local socket with the
# request on stdin: the CLI takes the token as an argument, which this host's process list would show.
socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
case "$socket" in
  unix://*) socket=${socket#unix://} ;;
  *) fail "DOCKER_HOST is $socket on $WORKER; the join needs the docker daemon's local unix socket" ;;
esac
command -v curl >/dev/null 2>&1 || fail "curl is not installed on $WORKER; install it (apt-get install curl) and run again"
if ! reply=$(printf '{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"%s","RemoteAddrs":["%s"],"JoinToken":"%s"}' \
    "$WORKER_IP" "$MANAGER_ADDRESS" "$token" \
    | curl -sS --max-time 300 --unix-socket "$socket" -H 'Content-Type: application/json' --data-binary @- \
      -w '\n%{http_code}' http://docker/swarm/join 2>&1); then
  fail "$WORKER could not reach its docker daemon on $socket: $reply"
fi
code=$(printf '%s\n' "$reply" | tail -n 1)
if [ "$code" != 200 ]; then
  # A join that timed out keeps retrying in the background; stop it so the next run starts clean.
  docker swarm leave --force >/dev/null 2>&1 || true
  fail "$WORKER could not join the swarm of $MASTER at $MANAGER_ADDRESS (HTTP $code): $(printf '%s\n' "$reply" | sed '$d') (is $MASTER up, a manager, and reachable from $WORKER on 2377/tcp, 7946/tcp+udp and 4789/udp?)"
fi
echo "$WORKER joined the swarm of $MASTER at $MANAGER_ADDRESS" >&2
