# shellcheck shell=sh
# The deploy key's forced command on swarm-master (installed as a root-owned program by
# swarm-deploy-user.sh; sshd runs it for the deploy user through `sudo -n`): `docker stack deploy` of
# the stack file on stdin, and nothing else. Its one argument is what the SSH client asked to run
# (sshd's SSH_ORIGINAL_COMMAND), which must be exactly `deploy <stack>`; a stack name is lower-case
# letters, digits, '-' and '_' (at most MAX_NAME characters). The nodes pull with the registry login of
# LOGIN_USER (the swarm's own, registry-login.sh), handed over by --with-registry-auth.
# Inputs: SERVER, LOGIN_USER, MAX_NAME, MAX_BYTES (the largest stack file accepted).
LC_ALL=C
export LC_ALL

step "reading the request"
[ "$#" -eq 1 ] || fail "refused: this key only deploys a stack: ssh deploy@$SERVER deploy <stack> < stack.yml"
case "$1" in
  "deploy "*) stack=${1#deploy } ;;
  *) fail "refused: this key only deploys a stack: ssh deploy@$SERVER deploy <stack> < stack.yml" ;;
esac
case "$stack" in
  "" | [!a-z0-9]* | *[!a-z0-9_-]*) fail "refused: a stack name is lower-case letters, digits, '-' and '_', starting with a letter or digit" ;;
esac
[ "${#stack}" -le "$MAX_NAME" ] || fail "refused: a stack name has at most $MAX_NAME characters"

step "reading the stack file from stdin"
umask 077
file=$(mktemp "${TMPDIR:-/tmp}/samarth-stack.XXXXXX")
head -c "$((MAX_BYTES + 1))" >"$file" || true
size=$(wc -c <"$file")
if [ "$size" -eq 0 ] || [ "$size" -gt "$MAX_BYTES" ]; then
  rm -f "$file"
  fail "refused: the stack file on stdin is empty or larger than $MAX_BYTES bytes"
fi

step "deploying stack $stack"
home=$(getent passwd "$LOGIN_USER" | cut -d: -f6) || home=""
if [ -n "$home" ] && [ -f "$home/.docker/config.json" ]; then
  DOCKER_CONFIG="$home/.docker"
  export DOCKER_CONFIG
else
  echo "$SAMARTH_SCRIPT: $LOGIN_USER has no docker login on $SERVER: the nodes pull without credentials" >&2
fi
status=0
docker stack deploy --with-registry-auth --compose-file "$file" "$stack" || status=$?
rm -f "$file"
[ "$status" -eq 0 ] || fail "docker stack deploy of $stack failed (exit $status); see above"
