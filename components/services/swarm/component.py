"""The Docker Swarm: swarm-master manages, swarm-node2 and swarm-node3 work; Jenkins deploys stacks on it.

Everything the swarm needs from a server is a shell script (pure functions below) run over SSH by a
``command.remote.Command``, so each one checks the node's state before acting and is safe to run
again. Per worker three commands carry the lifecycle, ordered so that deleting them (the worker taken
out of ``swarm.workers``) runs drain, leave, remove in that order:

    <worker>-swarm-seat   (master)  create: nothing (no SSH session); delete: remove the entry of
                                    the worker, drained and gone, from the node list at once
    <worker>-swarm-join   (worker)  create: join the master's swarm; delete: leave it
    <worker>-swarm-node   (master)  create/update: remove stale entries of the worker's address, set
                                    the node's labels; delete: drain it (returns once its tasks stopped)

Pulumi deletes dependents first, and node depends on join depends on seat, so a fresh `up` runs three
steps one after another (init, join, labels) as a person would (init, read the token, join), and a
removal takes as long as the drain. The registry logins wait for what a login really needs
(``RegistryLogin.ready``: the registry and the proxy serving its name), not for the swarm.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.platform.host.component import Host
from components.shared.model import SWARM_MANAGER
from components.shared.shell import render

from .settings import MANAGEMENT_PORT, Swarm

NETWORK_NAME = "application_default"
# Jenkins' identity on the manager (swarm.deployKey): a user whose key runs one root-owned program.
DEPLOY_USER = "deploy"
DEPLOY_HOME = "/var/lib/samarth-deploy"
DEPLOY_WRAPPER = "/usr/local/sbin/samarth-stack-deploy"
DEPLOY_SUDOERS = "/etc/sudoers.d/samarth-deploy"
# A stack's name prefixes its services' names, which Docker keeps within 63 characters.
DEPLOY_MAX_NAME = 40
DEPLOY_MAX_BYTES = 1024 * 1024
# How long a drained worker may take to stop its tasks.
DRAIN_TIMEOUT_S = 300


def node_labels(settings: Swarm, host: Host) -> dict[str, str]:
    """The labels a member carries: its role and declared memory, then the extra ones from config."""
    return {
        "role": "manager" if host.name == SWARM_MANAGER else "worker",
        "memory_mib": str(host.spec.memory_mib),
        **settings.labels.get(host.name, {}),
    }


def _manager_address(master_ip: str) -> str:
    return f"{master_ip}:{MANAGEMENT_PORT}"


def init_script(master: str, master_ip: str, settings: Swarm) -> str:
    """Make ``master`` the manager of a swarm advertised on its private IP, with the configured address
    pool (unless it already is one: then warn when its pool differs) and print the cluster facts and
    both join tokens as one JSON line: this output is secret."""
    return render(
        "swarm-init.sh", f"swarm-init[{master}]",
        MASTER=master, MASTER_IP=master_ip, MANAGER_ADDRESS=_manager_address(master_ip),
        **_overlay_kernel_inputs(master, settings),
        ADDRESS_POOL=settings.address_pool, POOL_MASK_LENGTH=str(settings.address_pool_mask_length),
    )


def _overlay_kernel_inputs(node: str, settings: Swarm) -> dict[str, str]:
    """What overlay-kernel.sh reads: the node (also SERVER, which root-lib.sh's messages name), whether the
    overlay is encrypted, the kernel's /proc."""
    return {"NODE": node, "SERVER": node, "ENCRYPT_OVERLAY": str(settings.encrypt_overlay).lower(), "PROC_DIR": "/proc"}


def join_script(worker: str, worker_ip: str, master: str, master_ip: str, settings: Swarm) -> str:
    """Join ``worker`` to the master's swarm with the worker token read from stdin; a no-op when it is
    already a worker of that swarm, an error when it belongs to another one. Prints the node ID."""
    return render(
        "swarm-join.sh", f"swarm-join[{worker}]",
        WORKER=worker, WORKER_IP=worker_ip, MASTER=master, MANAGER_ADDRESS=_manager_address(master_ip),
        **_overlay_kernel_inputs(worker, settings),
    )


def leave_script(worker: str) -> str:
    """Make ``worker`` leave whatever swarm it is in; nothing to do when it is in none."""
    return render("swarm-leave.sh", f"swarm-leave[{worker}]", WORKER=worker)


def unseat_script(master: str, worker: str, worker_ip: str) -> str:
    """On the master, after the drained worker left: remove its entries from the node list at once."""
    return render("swarm-unseat.sh", f"swarm-unseat[{worker}]", MASTER=master, WORKER=worker, WORKER_IP=worker_ip)


def labels_script(master: str, node: str, node_ip: Optional[str], labels: dict[str, str]) -> str:
    """On the master: make the node's labels exactly ``labels``, touching the node only when they
    differ. ``node_ip`` None means the master itself."""
    return render(
        "swarm-labels.sh", f"swarm-labels[{node}]",
        MASTER=master, NODE=node, NODE_IP=node_ip or "",
        LABELS="\n".join(f"{key}={value}" for key, value in sorted(labels.items())),
        LABEL_KEYS=" ".join(sorted(labels)),
    )


def drain_script(master: str, worker: str, worker_ip: str) -> str:
    """On the master, before a worker leaves: drain it and wait until its tasks have stopped; refuse
    when the node list cannot be read."""
    return render(
        "swarm-drain.sh", f"swarm-drain[{worker}]",
        MASTER=master, WORKER=worker, WORKER_IP=worker_ip, DRAIN_TIMEOUT_S=DRAIN_TIMEOUT_S,
    )


def _login_script(node: str, roots: Optional[str], server_and_user: list[str]) -> str:
    return login_script(node, server_and_user[0], server_and_user[1], roots)


def login_script(node: str, server: str, username: str, roots: Optional[str] = None) -> str:
    """``docker login`` to the registry as ``username`` with the password read from stdin, unless the
    node's Docker config already holds exactly these credentials for ``server``; with ``roots`` (PEM),
    the node's daemon trusts them for ``server`` first."""
    return render("registry-login.sh", f"registry-login[{node}]", NODE=node, SERVER=node, REGISTRY=server,
                  REGISTRY_USER=username, REGISTRY_ROOTS=(roots or "").strip())


def stack_deploy_wrapper(master: str, login_user: str) -> str:
    """The deploy key's forced command (installed at ``DEPLOY_WRAPPER``): ``docker stack deploy`` of the
    stack file on stdin under the name the client asks for (``deploy <stack>``), and nothing else; the
    nodes pull with ``login_user``'s registry login (the swarm's, registry-login.sh). A program of its
    own: sudo runs it by its path."""
    return "#!/bin/sh\n" + render(
        "swarm-stack-deploy.sh", "samarth-stack-deploy",
        SERVER=master, LOGIN_USER=login_user, MAX_NAME=DEPLOY_MAX_NAME, MAX_BYTES=DEPLOY_MAX_BYTES,
    )


def deploy_user_script(master: str, login_user: str, public_key: str, networks: Sequence[str]) -> str:
    """On the manager: the ``deploy`` user, its key accepted from ``networks`` only with every SSH feature
    off and the stack-deploy wrapper as its forced command (run as root through sudo)."""
    return render(
        "swarm-deploy-user.sh", f"swarm-deploy-user[{master}]",
        SERVER=master, DEPLOY_USER=DEPLOY_USER, DEPLOY_HOME=DEPLOY_HOME, PUBLIC_KEY=public_key,
        FROM_NETWORKS=",".join(networks), WRAPPER=DEPLOY_WRAPPER, WRAPPER_TEXT=stack_deploy_wrapper(master, login_user),
        SUDOERS_FILE=DEPLOY_SUDOERS,
    )


def deploy_user_remove_script(master: str) -> str:
    """On the manager, when ``swarm.deployKey`` is removed: the user, its key, its sudo rule and the wrapper gone."""
    return render(
        "swarm-deploy-user-remove.sh", f"swarm-deploy-user-remove[{master}]",
        SERVER=master, DEPLOY_USER=DEPLOY_USER, DEPLOY_HOME=DEPLOY_HOME, WRAPPER=DEPLOY_WRAPPER, SUDOERS_FILE=DEPLOY_SUDOERS,
    )


@dataclass(frozen=True)
class RegistryLogin:
    """Where the nodes log in and with what (the registry component provides these), and what must be
    up before a login can succeed: the registry itself and the proxy that serves its public name."""

    server: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]
    ready: Sequence[pulumi.Resource] = ()
    # The roots the registry's certificate chains to when Docker does not trust them by itself (PEM).
    trusted_roots: Optional[str] = None


@dataclass(frozen=True)
class ClusterArgs:
    settings: Swarm
    manager: Host
    workers: dict[str, Host]
    registry: Optional[RegistryLogin] = None
    # Where Jenkins connects from (firewall.jenkins): the deploy key's from= option.
    jenkins_networks: Sequence[str] = ()


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
        self.manager_address = pulumi.Output.from_input(f"{master_ip}:{MANAGEMENT_PORT}")
        init = command.remote.Command(
            f"{master.name}-swarm-init",
            connection=master.connection,
            create=init_script(master.name, master_ip, settings),
            logging=command.remote.Logging.NONE,
            # Its stdout holds the join tokens: never handed back to a later run.
            add_previous_output_in_env=False,
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
                delete=unseat_script(master.name, worker_name, worker_ip),
                opts=master.command_options(self),
            )
            join = command.remote.Command(
                f"{worker_name}-swarm-join",
                connection=worker.connection,
                create=join_script(worker_name, worker_ip, master.name, master_ip, settings),
                delete=leave_script(worker_name),
                stdin=self.worker_token.apply(lambda token: f"{token}\n"),
                logging=command.remote.Logging.NONE,
                add_previous_output_in_env=False,
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
            # Only the password is secret: the user name is in the script, the password on stdin.
            password: pulumi.Output[str] = pulumi.Output.secret(pulumi.Output.from_input(registry.password).apply(lambda p: f"{p}\n"))
            for host in (master, *(args.workers[w] for w in settings.workers)):
                command.remote.Command(
                    f"{host.name}-registry-login",
                    connection=host.connection,
                    create=pulumi.Output.all(registry.server, registry.username).apply(partial(_login_script, host.name, registry.trusted_roots)),
                    stdin=password,
                    logging=command.remote.Logging.NONE,
                    add_previous_output_in_env=False,
                    opts=host.command_options(self, depends_on=list(registry.ready)),
                )

        if settings.deploy_key is not None:
            # Jenkins' deploy user: config validation guarantees the networks its key is limited to.
            command.remote.Command(
                f"{master.name}-deploy-user",
                connection=master.connection,
                create=deploy_user_script(master.name, master.spec.ssh_user, settings.deploy_key, args.jenkins_networks),
                delete=deploy_user_remove_script(master.name),
                opts=master.command_options(self, depends_on=[init]),
            )

        self.exports = {"swarmManagerAddress": self.manager_address, "swarmNetwork": self.network.name}
        self.register_outputs(
            {"managerAddress": self.manager_address, "network": self.network.name, "members": list(settings.members)}
        )
