"""The Docker Swarm: swarm-master manages, swarm-node2 and swarm-node3 work; Jenkins deploys stacks on it.

Everything the swarm needs from a server is a shell script (pure functions below) run over SSH by a
``command.remote.Command``, so each one checks the node's state before acting and is safe to run
again. Per worker three commands carry the lifecycle, ordered so that deleting them (the worker taken
out of ``swarm.workers``) runs drain, leave, remove in that order:

    <worker>-swarm-seat   (master)  create: forget stale "down" entries of the worker's address
                                    delete: wait until the worker is down, remove its entry
    <worker>-swarm-join   (worker)  create: join the master's swarm; delete: leave it
    <worker>-swarm-node   (master)  create/update: set the node's labels; delete: drain it

Pulumi deletes dependents first, and node depends on join depends on seat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from .config import SWARM_MANAGER, Swarm
from .host import Host
from .ports import SWARM_MANAGEMENT_PORT
from .shell import quote, script

SWARM_PORT = SWARM_MANAGEMENT_PORT
NETWORK_NAME = "application_default"
# How long a drained worker may take to stop its tasks, and a leaving worker to show as down.
DRAIN_TIMEOUT_S = 300
LEAVE_TIMEOUT_S = 60

# `docker info` fields, as Go templates (written here once; the scripts are f-strings).
STATE = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
NODE_ID = "{{.Swarm.NodeID}}"
NODE_ADDR = "{{.Swarm.NodeAddr}}"
CLUSTER_ID = "{{.Swarm.Cluster.ID}}"
REMOTE_MANAGERS = "{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}"
NODE_ROW = "{{.ID}} {{.Status.Addr}} {{.Status.State}}"
LABEL_LINES = '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}}{{"\\n"}}{{end}}'


def node_labels(settings: Swarm, host: Host) -> dict[str, str]:
    """The labels a member carries: its role and declared memory, then the extra ones from config."""
    return {
        "role": "manager" if host.name == SWARM_MANAGER else "worker",
        "memory_mib": str(host.spec.memory_mib),
        **settings.labels.get(host.name, {}),
    }


def init_script(master: str, master_ip: str) -> str:
    """Make ``master`` the manager of a swarm advertised on its private IP (unless it already is one)
    and print the cluster facts and both join tokens as one JSON line: this output is secret."""
    return script(
        f"swarm-init[{master}]",
        f"""
step "asking the docker daemon on {master} for its swarm state"
state=$(docker info --format '{STATE}') || fail "cannot read the swarm state of {master} from its docker daemon"
case "$state" in
  "active true")
    address=$(docker info --format '{NODE_ADDR}')
    [ "$address" = {quote(master_ip)} ] \\
      || fail "{master} already manages a swarm advertised on $address, but its private IP in config is {master_ip}"
    echo "{master} is already a manager of swarm $(docker info --format '{CLUSTER_ID}') on {master_ip}; not initialising" >&2
    ;;
  "inactive false")
    step "initialising a swarm advertised on {master_ip}:{SWARM_PORT}"
    docker swarm init --advertise-addr {quote(master_ip)} --listen-addr {quote(f"{master_ip}:{SWARM_PORT}")} >/dev/null
    echo "{master} initialised a new swarm on {master_ip}:{SWARM_PORT}" >&2
    ;;
  "active false")
    managers=$(docker info --format '{REMOTE_MANAGERS}')
    fail "{master} is a worker in another swarm (managers: ${{managers% }}); run 'docker swarm leave' on {master} first"
    ;;
  pending*)
    fail "{master} is still trying to join another swarm; run 'docker swarm leave --force' on {master} first"
    ;;
  locked*)
    fail "the swarm on {master} is locked (autolock); unlock it with 'docker swarm unlock' on {master}"
    ;;
  *)
    fail "{master} reports swarm state '$state'; see 'docker info' on {master}"
    ;;
esac
step "reading the join tokens"
worker_token=$(docker swarm join-token -q worker)
manager_token=$(docker swarm join-token -q manager)
printf '{{"clusterId":"%s","nodeId":"%s","managerAddress":"%s","workerToken":"%s","managerToken":"%s"}}\\n' \\
  "$(docker info --format '{CLUSTER_ID}')" "$(docker info --format '{NODE_ID}')" {quote(f"{master_ip}:{SWARM_PORT}")} \\
  "$worker_token" "$manager_token"
""",
    )


def join_script(worker: str, worker_ip: str, master: str, master_ip: str) -> str:
    """Join ``worker`` to the master's swarm with the worker token read from stdin; a no-op when it is
    already a worker of that swarm, an error when it belongs to another one. Prints the node ID."""
    manager = f"{master_ip}:{SWARM_PORT}"
    return script(
        f"swarm-join[{worker}]",
        f"""
step "asking the docker daemon on {worker} for its swarm state"
state=$(docker info --format '{STATE}') || fail "cannot read the swarm state of {worker} from its docker daemon"
case "$state" in
  "active false")
    managers=$(docker info --format '{REMOTE_MANAGERS}')
    managers=${{managers% }}
    case " $managers " in
      *" {manager} "*)
        echo "{worker} has already joined the swarm of {master} ({manager}); nothing to do" >&2
        docker info --format '{NODE_ID}'
        exit 0
        ;;
    esac
    fail "{worker} already belongs to another swarm (managers: $managers), not to the swarm of {master} ({manager}); run 'docker swarm leave' on {worker} first"
    ;;
  "active true")
    fail "{worker} is a manager of a swarm advertised on $(docker info --format '{NODE_ADDR}'); it must be a worker of {master}'s swarm: run 'docker swarm leave --force' on {worker} first"
    ;;
  pending*)
    echo "{worker} has an unfinished join from an earlier attempt; abandoning it" >&2
    docker swarm leave --force >/dev/null
    ;;
  "inactive false") ;;
  locked*)
    fail "{worker} is in a locked swarm; unlock it with 'docker swarm unlock' on {worker}"
    ;;
  *)
    fail "{worker} reports swarm state '$state'; see 'docker info' on {worker}"
    ;;
esac
step "reading the worker join token from stdin"
token=""
IFS= read -r token || [ -n "$token" ] || fail "no worker join token on stdin"
step "joining the swarm of {master} at {manager}"
if ! joined=$(docker swarm join --token "$token" --advertise-addr {quote(worker_ip)} {quote(manager)} 2>&1); then
  # A join that timed out keeps retrying in the background; stop it so the next run starts clean.
  docker swarm leave --force >/dev/null 2>&1 || true
  fail "{worker} could not join the swarm of {master} at {manager}: $joined (is {master} up, a manager, and reachable from {worker} on 2377/tcp, 7946/tcp+udp and 4789/udp?)"
fi
echo "{worker} joined the swarm of {master} at {manager}" >&2
docker info --format '{NODE_ID}'
""",
    )


def leave_script(worker: str) -> str:
    """Make ``worker`` leave whatever swarm it is in; nothing to do when it is in none."""
    return script(
        f"swarm-leave[{worker}]",
        f"""
step "asking the docker daemon on {worker} for its swarm state"
state=$(docker info --format '{STATE}') || fail "cannot read the swarm state of {worker} from its docker daemon"
case "$state" in
  inactive*)
    echo "{worker} is in no swarm; nothing to leave" >&2
    ;;
  "active true")
    fail "{worker} is a manager; refusing to take a manager out of its swarm (demote it first)"
    ;;
  *)
    step "leaving the swarm"
    docker swarm leave --force >/dev/null
    echo "{worker} left the swarm" >&2
    ;;
esac
""",
    )


def _manager_or_exit(master: str, what: str) -> str:
    """Shell lines: stop quietly when the master manages no swarm any more (nothing left to tidy)."""
    return f"""
step "checking that {master} still manages the swarm"
if [ "$(docker info --format '{STATE}')" != "active true" ]; then
  echo "{master} manages no swarm; {what}" >&2
  exit 0
fi
"""


def _nodes_at(address: str, variable: str, states: str, matching: bool = True) -> str:
    """Shell lines: set ``variable`` to the IDs of nodes advertising ``address`` whose state matches
    (or, with ``matching=False``, does not match) the ``case`` pattern ``states``."""
    hit, miss = (f'{variable}="${variable} $id"', ":") if matching else (":", f'{variable}="${variable} $id"')
    return f"""
{variable}=""
for row in $(docker node inspect --format '{NODE_ROW}' $(docker node ls -q) | tr ' ' ','); do
  id=${{row%%,*}}; rest=${{row#*,}}; addr=${{rest%%,*}}; node_state=${{rest#*,}}
  [ "$addr" = {quote(address)} ] || continue
  case "$node_state" in {states}) {hit} ;; *) {miss} ;; esac
done
"""


def seat_script(master: str, worker: str, worker_ip: str) -> str:
    """On the master, before a worker joins: remove stale "down" entries of the worker's address, left
    behind by an earlier life of that server, so the node list shows each server once."""
    return script(
        f"swarm-seat[{worker}]",
        _manager_or_exit(master, "nothing to tidy")
        + f"""
step "looking for stale entries of {worker} ({worker_ip}) in the node list"
{_nodes_at(worker_ip, "stale", "down")}
[ -n "$stale" ] || echo "{worker} ({worker_ip}) has no stale entry in the node list" >&2
for id in $stale; do
  docker node rm "$id" >/dev/null
  echo "removed the stale down entry $id of {worker} ({worker_ip})" >&2
done
""",
    )


def unseat_script(master: str, worker: str, worker_ip: str) -> str:
    """On the master, after the worker left: wait until it shows as down, then remove its entry."""
    return script(
        f"swarm-unseat[{worker}]",
        _manager_or_exit(master, f"no entry of {worker} to remove")
        + f"""
step "waiting for {worker} ({worker_ip}) to show as down after leaving"
waited=0
while :; do
  {_nodes_at(worker_ip, "up", "down", matching=False)}
  [ -z "$up" ] && break
  [ "$waited" -lt {LEAVE_TIMEOUT_S} ] \\
    || fail "{worker} ({worker_ip}) is still up in the node list {LEAVE_TIMEOUT_S} s after it should have left: node$up"
  sleep 1
  waited=$((waited + 1))
done
step "removing {worker} ({worker_ip}) from the node list"
{_nodes_at(worker_ip, "gone", "down")}
[ -n "$gone" ] || echo "{worker} ({worker_ip}) is not in the node list; nothing to remove" >&2
for id in $gone; do
  docker node rm "$id" >/dev/null
  echo "removed node $id of {worker} ({worker_ip})" >&2
done
""",
    )


def labels_script(master: str, node: str, node_ip: Optional[str], labels: dict[str, str]) -> str:
    """On the master: make the node's labels exactly ``labels`` (add, change, remove), touching the node
    only when they differ. ``node_ip`` None means the master itself."""
    if node_ip is None:
        find = f"""
step "reading {node}'s own node ID"
id=$(docker info --format '{NODE_ID}')
"""
    else:
        find = f"""
step "finding {node} ({node_ip}) in the node list"
{_nodes_at(node_ip, "ids", "ready")}
set -- $ids
[ "$#" -eq 1 ] || fail "expected one ready node advertising {node_ip} ({node}) in the swarm of {master}, found $#: $ids"
id=$1
"""
    wanted = "\n".join(
        f"""printf '%s\\n' "$current" | grep -qxF {quote(f"{k}={v}")} || set -- "$@" --label-add {quote(f"{k}={v}")}"""
        for k, v in sorted(labels.items())
    )
    keep = "|".join(quote(k) for k in sorted(labels))
    return script(
        f"swarm-labels[{node}]",
        f"""
step "checking that {master} manages a swarm"
[ "$(docker info --format '{STATE}')" = "active true" ] || fail "{master} is not a swarm manager; cannot label {node}"
{find}
step "comparing the labels of {node}"
current=$(docker node inspect --format '{LABEL_LINES}' "$id")
set --
{wanted}
for key in $(printf '%s\\n' "$current" | sed -n 's/=.*//p'); do
  case "$key" in {keep}) ;; *) set -- "$@" --label-rm "$key" ;; esac
done
if [ "$#" -eq 0 ]; then
  echo "{node} already carries its labels" >&2
else
  step "updating the labels of {node}"
  docker node update "$@" "$id" >/dev/null
  echo "{node}: labels updated ($*)" >&2
fi
""",
    )


def drain_script(master: str, worker: str, worker_ip: str) -> str:
    """On the master, before a worker leaves: drain it and wait until its tasks have stopped."""
    return script(
        f"swarm-drain[{worker}]",
        _manager_or_exit(master, f"nothing to drain on {worker}")
        + f"""
step "finding {worker} ({worker_ip}) in the node list"
{_nodes_at(worker_ip, "ids", "down", matching=False)}
if [ -z "$ids" ]; then
  echo "{worker} ({worker_ip}) is not an active node of the swarm; nothing to drain" >&2
  exit 0
fi
for id in $ids; do
  step "draining {worker} (node $id)"
  docker node update --availability drain "$id" >/dev/null
  # Draining turns every task's desired state to shutdown at once; wait until they have stopped
  # (a task's history stays listed, in one of the end states).
  waited=0
  while docker node ps --format '{{{{.CurrentState}}}}' "$id" | grep -qvE '^(Shutdown|Failed|Complete|Rejected|Orphaned|Remove)'; do
    [ "$waited" -lt {DRAIN_TIMEOUT_S} ] || fail "{worker} still runs tasks {DRAIN_TIMEOUT_S} s after it was drained"
    sleep 1
    waited=$((waited + 1))
  done
  echo "{worker} drained" >&2
done
""",
    )


def login_script(node: str, server: str) -> str:
    """``docker login`` to the registry with the username and password read from stdin (one per line),
    unless the node's Docker config already holds exactly these credentials for ``server``."""
    return script(
        f"registry-login[{node}]",
        f"""
step "reading the registry credentials from stdin"
username=""; password=""
IFS= read -r username || true
IFS= read -r password || [ -n "$password" ] || fail "no registry password on stdin"
[ -n "$username" ] || fail "no registry username on stdin"
step "checking the docker login of {node} for {server}"
config="${{DOCKER_CONFIG:-$HOME/.docker}}/config.json"
# Passed through the environment, not argv: the process list would show it.
SAMARTH_AUTH=$(printf '%s:%s' "$username" "$password" | base64 | tr -d '\\n')
export SAMARTH_AUTH
if [ -f "$config" ] && awk -v server={quote(f'"{server}"')} '
    index($0, server) {{ at = NR }}
    at && NR == at + 1 && index($0, "\\"auth\\": \\"" ENVIRON["SAMARTH_AUTH"] "\\"") {{ found = 1 }}
    END {{ exit !found }}' "$config"; then
  echo "{node} is already logged in to {server}" >&2
  exit 0
fi
step "logging in to {server}"
printf '%s\\n' "$password" | docker login --username "$username" --password-stdin {quote(server)} >/dev/null
echo "{node} logged in to {server}" >&2
""",
    )


@dataclass(frozen=True)
class RegistryLogin:
    """Where the nodes log in and with what (the registry component provides these)."""

    server: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass(frozen=True)
class ClusterArgs:
    settings: Swarm
    manager: Host
    workers: dict[str, Host]
    registry: Optional[RegistryLogin] = None


def _secret_field(stdout: pulumi.Output[str], key: str) -> pulumi.Output[str]:
    return pulumi.Output.secret(stdout.apply(lambda out: json.loads(out)[key] if out else ""))


class Cluster(pulumi.ComponentResource):
    """The swarm, its labels, the overlay network every stack joins and the registry logins."""

    manager_address: pulumi.Output[str]
    worker_token: pulumi.Output[str]
    manager_token: pulumi.Output[str]
    network: docker.Network

    def __init__(self, name: str, args: ClusterArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:swarm:Cluster", name, None, opts)
        settings, master = args.settings, args.manager
        master_ip = master.spec.private_ip
        self.manager_address = pulumi.Output.from_input(f"{master_ip}:{SWARM_PORT}")

        init = command.remote.Command(
            f"{master.name}-swarm-init",
            connection=master.connection,
            create=init_script(master.name, master_ip),
            logging=command.remote.Logging.NONE,
            opts=master.command_options(self, additional_secret_outputs=["stdout"]),
        )
        self.worker_token = _secret_field(init.stdout, "workerToken")
        self.manager_token = _secret_field(init.stdout, "managerToken")

        command.remote.Command(
            f"{master.name}-swarm-node",
            connection=master.connection,
            create=labels_script(master.name, master.name, None, node_labels(settings, master)),
            opts=master.command_options(self, depends_on=[init]),
        )
        for worker_name in settings.workers:
            worker = args.workers[worker_name]
            worker_ip = worker.spec.private_ip
            seat = command.remote.Command(
                f"{worker_name}-swarm-seat",
                connection=master.connection,
                create=seat_script(master.name, worker_name, worker_ip),
                delete=unseat_script(master.name, worker_name, worker_ip),
                opts=master.command_options(self, depends_on=[init]),
            )
            join = command.remote.Command(
                f"{worker_name}-swarm-join",
                connection=worker.connection,
                create=join_script(worker_name, worker_ip, master.name, master_ip),
                delete=leave_script(worker_name),
                stdin=self.worker_token.apply(lambda token: f"{token}\n"),
                logging=command.remote.Logging.NONE,
                opts=worker.command_options(self, depends_on=[seat]),
            )
            command.remote.Command(
                f"{worker_name}-swarm-node",
                connection=master.connection,
                create=labels_script(master.name, worker_name, worker_ip, node_labels(settings, worker)),
                delete=drain_script(master.name, worker_name, worker_ip),
                opts=master.command_options(self, depends_on=[join]),
            )

        self.network = docker.Network(
            f"{master.name}-{NETWORK_NAME}",
            name=NETWORK_NAME,
            driver="overlay",
            attachable=True,
            options={"encrypted": "true"} if settings.encrypt_overlay else {},
            # The daemon reads back options it added itself (the VXLAN ID), which would otherwise show
            # as a change that replaces the network, which fails once stacks are attached to it.
            opts=master.docker_options(self, depends_on=[init], ignore_changes=["options"]),
        )

        if args.registry is not None and settings.registry_login:
            registry = args.registry
            credentials = pulumi.Output.secret(
                pulumi.Output.all(registry.username, registry.password).apply(lambda up: f"{up[0]}\n{up[1]}\n")
            )
            for host in (master, *(args.workers[w] for w in settings.workers)):
                command.remote.Command(
                    f"{host.name}-registry-login",
                    connection=host.connection,
                    create=pulumi.Output.from_input(registry.server).apply(lambda s, n=host.name: login_script(n, s)),
                    stdin=credentials,
                    logging=command.remote.Logging.NONE,
                    opts=host.command_options(self, depends_on=[init]),
                )

        self.register_outputs(
            {"managerAddress": self.manager_address, "network": self.network.name, "members": list(settings.members)}
        )
