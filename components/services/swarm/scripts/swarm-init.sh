# shellcheck shell=sh
# Make MASTER the manager of a swarm advertised on MASTER_IP (unless it already is one) and print the
# cluster facts and both join tokens as one JSON line: this output is secret.
# The address pool applies at init only: an existing swarm keeps its own, with a warning when it differs.
# Inputs: MASTER (also NODE), ENCRYPT_OVERLAY, PROC_DIR, MASTER_IP, MANAGER_ADDRESS (MASTER_IP:port), ADDRESS_POOL (CIDR), POOL_MASK_LENGTH.
. ./swarm-lib.sh
. ./overlay-kernel.sh
step "asking the docker daemon on $MASTER for its swarm state"
state=$(swarm_state) || fail "cannot read the swarm state of $MASTER from its docker daemon"
case "$state" in
  "active true")
    address=$(docker info --format '{{.Swarm.NodeAddr}}')
    [ "$address" = "$MASTER_IP" ] \
      || fail "$MASTER already manages a swarm advertised on $address, but its private IP in config is $MASTER_IP"
    echo "$MASTER is already a manager of swarm $(docker info --format '{{.Swarm.Cluster.ID}}') on $MASTER_IP; not initialising" >&2
    pool=$(docker info --format '{{json .Swarm.Cluster.DefaultAddrPool}} {{.Swarm.Cluster.SubnetSize}}') \
      || fail "cannot read the address pool of the swarm on $MASTER"
    if [ "$pool" != "[\"$ADDRESS_POOL\"] $POOL_MASK_LENGTH" ]; then
      echo "WARNING: the swarm on $MASTER allocates overlay networks from $pool (pool, subnet size), not" \
        "[\"$ADDRESS_POOL\"] $POOL_MASK_LENGTH as swarm.addressPool and swarm.addressPoolMaskLength say;" \
        "a swarm's pool is fixed when it is initialised and is left unchanged (docs/swarm.md)" >&2
    fi
    ;;
  "inactive false")
    step "initialising a swarm advertised on $MANAGER_ADDRESS"
    docker swarm init --advertise-addr "$MASTER_IP" --listen-addr "$MANAGER_ADDRESS" \
      --default-addr-pool "$ADDRESS_POOL" --default-addr-pool-mask-length "$POOL_MASK_LENGTH" >/dev/null
    echo "$MASTER initialised a new swarm on $MANAGER_ADDRESS" >&2
    ;;
  "active false")
    managers=$(docker info --format '{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}')
    fail "$MASTER is a worker in another swarm (managers: ${managers% }); run 'docker swarm leave' on $MASTER first"
    ;;
  pending*)
    fail "$MASTER is still trying to join another swarm; run 'docker swarm leave --force' on $MASTER first"
    ;;
  locked*)
    fail "the swarm on $MASTER is locked (autolock); unlock it with 'docker swarm unlock' on $MASTER"
    ;;
  *)
    fail "$MASTER reports swarm state '$state'; see 'docker info' on $MASTER"
    ;;
esac
step "reading the cluster's IDs and join tokens"
# Both IDs in one daemon call (each CLI call is a process start and a round trip).
ids=$(docker info --format '{{.Swarm.Cluster.ID}} {{.Swarm.NodeID}}')
worker_token=$(docker swarm join-token -q worker)
manager_token=$(docker swarm join-token -q manager)
printf '{"clusterId":"%s","nodeId":"%s","managerAddress":"%s","workerToken":"%s","managerToken":"%s"}\n' \
  "${ids% *}" "${ids#* }" "$MANAGER_ADDRESS" "$worker_token" "$manager_token"
