#!/bin/sh
# How a Jenkins job ships a service to the swarm: the steps the README describes, and exactly what the
# lab's request-flow test runs (tests/lab/test_request_flow_lab.py).
#
# Jenkins keeps as credentials what `pulumi stack output` gives once:
#   VAULT_ADDR    vaultAddress                          VAULT_CACERT  vaultCaCertificate, as a file (TLS)
#   ROLE_ID       jenkinsRoleId                         the secret ID jenkinsSecretId, on this script's stdin
# and per job:
#   DOCKER_HOST   the swarm manager, e.g. ssh://deploy@<swarm-master private IP>
#   IMAGE         the image the job built, e.g. esamwad-backend:build-42
#   SERVICE, TAG  its name and tag in the registry, e.g. esamwad-backend and 1.4.2
#   STACK_FILE    the stack's compose file; it names the image as ${IMAGE_REF} and joins the network
#                 application_default as external
#   STACK         the stack's name, e.g. samarth
# Secrets never appear as arguments: the secret ID and the registry password travel on stdin, the
# Vault token in the environment.
set -eu

# 1. Log in to Vault with the AppRole (the secret ID from stdin); the token can only read kv/samarth/*.
VAULT_TOKEN=$(vault write -field=token auth/approle/login role_id="$ROLE_ID" secret_id=-)
export VAULT_TOKEN

# 2. The registry's address and credentials, published by the program at kv/samarth/registry.
server=$(vault kv get -mount=kv -field=DOCKER_SERVER samarth/registry)
username=$(vault kv get -mount=kv -field=DOCKER_USERNAME samarth/registry)
vault kv get -mount=kv -field=DOCKER_PASSWORD samarth/registry \
  | docker login --username "$username" --password-stdin "$server"

# 3. Push the image under the registry's public name (through Nginx, over HTTPS).
IMAGE_REF="$server/$SERVICE:$TAG"
export IMAGE_REF
docker tag "$IMAGE" "$IMAGE_REF"
docker push "$IMAGE_REF"

# 4. Deploy on the swarm; --with-registry-auth hands the login to the nodes that pull the image.
docker stack deploy --with-registry-auth --compose-file "$STACK_FILE" "$STACK"
