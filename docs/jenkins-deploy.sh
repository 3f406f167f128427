#!/bin/sh
# How a Jenkins job ships a service to the swarm: the steps the README describes, and exactly what the
# lab's request-flow test runs (tests/lab/test_request_flow_lab.py).
#
# Jenkins keeps as credentials what `pulumi stack output` gives once:
#   VAULT_ADDR    vaultAddress                          VAULT_CACERT  vaultCaCertificate, as a file (TLS)
#   ROLE_ID       jenkinsRoleId                         the secret ID jenkinsSecretId, on this script's stdin
#   DEPLOY_KNOWN_HOSTS  a known_hosts file: swarm-master's private IP and its pinned host key
#                 (servers.swarm-master.hostKey in the stack file)
#   the private half of the deploy key (swarm.deployKey is its public half), in Jenkins' SSH agent
#   (SSH_AUTH_SOCK) or as the file DEPLOY_KEY_FILE
# and per job:
#   DEPLOY_HOST   swarm-master's private IP (DEPLOY_PORT: its SSH port, 22 unless set)
#   IMAGE         the image the job built with its own Docker, e.g. esamwad-backend:build-42
#   SERVICE, TAG  its name and tag in the registry, e.g. esamwad-backend and 1.4.2
#   STACK_FILE    the stack's compose file; it names the image as ${IMAGE_REF} (the only variable filled
#                 in) and joins the network application_default as external
#   STACK         the stack's name, e.g. samarth
# Secrets never appear as arguments: the secret ID and the registry password travel on stdin, the
# Vault token in the environment.
set -eu

# 1. Log in to Vault with the AppRole (the secret ID from stdin); the token can read the applications'
#    paths under kv/samarth/ and nothing else.
VAULT_TOKEN=$(vault write -field=token auth/approle/login role_id="$ROLE_ID" secret_id=-)
export VAULT_TOKEN

# 2. The registry's address and Jenkins' own registry user, published by the program at kv/samarth/registry.
server=$(vault kv get -mount=kv -field=DOCKER_SERVER samarth/registry)
username=$(vault kv get -mount=kv -field=DOCKER_USERNAME samarth/registry)
vault kv get -mount=kv -field=DOCKER_PASSWORD samarth/registry |
  docker login --username "$username" --password-stdin "$server"

# 3. Push the image under the registry's public name (through Nginx, over HTTPS).
IMAGE_REF="$server/$SERVICE:$TAG"
export IMAGE_REF
docker tag "$IMAGE" "$IMAGE_REF"
docker push "$IMAGE_REF"

# 4. Deploy on the swarm: the stack file, its ${IMAGE_REF} filled in here (swarm-master knows no job's
#    variables), on the stdin of the deploy key, whose forced command on swarm-master runs only
#    `docker stack deploy --with-registry-auth` of it (the nodes pull with the swarm's registry login).
set -- -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DEPLOY_KNOWN_HOSTS" \
  -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -p "${DEPLOY_PORT:-22}"
if [ -n "${DEPLOY_KEY_FILE:-}" ]; then
  set -- "$@" -o IdentitiesOnly=yes -i "$DEPLOY_KEY_FILE"
fi
# shellcheck disable=SC2029 # "deploy <stack>" is the request the forced command reads, made here
sed "s|\${IMAGE_REF}|$IMAGE_REF|g" "$STACK_FILE" | ssh "$@" "deploy@$DEPLOY_HOST" deploy "$STACK"
