"""One server: how Pulumi reaches it (SSH for commands, SSH for Docker) and a preflight check.

Every other component receives ``Host`` objects, never raw addresses: the private IP a database binds
to, the connection a script runs over and the Docker provider a container is created with all come
from here.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.shared.model import DOCKER_HUB, ServerName, image_registry
from components.shared.publishing import CredentialBook
from components.shared.shell import render

from .settings import Access, JumpHost, Logs, Server

if TYPE_CHECKING:
    from components.config import StackConfig

# A VM reports a little less than its nominal memory (kernel, firmware reservations).
MEMORY_TOLERANCE = 0.9
# Where the program writes each stack's known_hosts for the Docker provider's ssh client: on the
# machine that runs Pulumi, relative to the working directory as the Vault CA file is (the CLI runs the
# program in the project directory), resolved when written. Not committed: it is rendered from the
# stack file.
KNOWN_HOSTS_DIR = Path(".samarth")


def ssh_address(server: Server, access: Access) -> str:
    """The address Pulumi's SSH connections reach ``server`` on."""
    address = server.public_address if access.via == "public" else server.private_ip
    assert address is not None  # config validation guarantees it for via=public
    return address


def pinned_key(host_key: str) -> str:
    """``<type> <base64>`` of a configured host key, without the comment (example keys carry one)."""
    return " ".join(host_key.split()[:2])


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def render_known_hosts(servers: Mapping[ServerName, Server], access: Access) -> str:
    """A known_hosts file with exactly the pinned keys: each server at the address Pulumi reaches it
    on, and the jump host. One key per host, so OpenSSH negotiates that key's type and no other."""
    lines = []
    jump = access.jump_host
    if jump is not None and jump.host_key is not None:
        lines.append(f"{_known_hosts_name(jump.host, jump.port)} {pinned_key(jump.host_key)}\n")
    for server in servers.values():
        if server.host_key is not None:
            lines.append(f"{_known_hosts_name(ssh_address(server, access), server.ssh_port)} {pinned_key(server.host_key)}\n")
    return "".join(lines)


def write_known_hosts(stack: str, server: str, text: str, directory: Path = KNOWN_HOSTS_DIR) -> Path:
    """Write ``text`` as ``<directory>/<stack>/<server>.known_hosts`` (atomically: another run may be
    reading it) and return its absolute path."""
    target = directory.resolve() / stack / f"{server}.known_hosts"
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".known_hosts.")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return target


def docker_ssh_opts(known_hosts: Path, jump: Optional[JumpHost]) -> list[str]:
    """The Docker provider's options for the local ssh client: only the pinned keys are trusted (no
    ~/.ssh/known_hosts, no system file, nothing learnt), and the jump host is checked the same way.

    The jump goes through ``ProxyCommand`` rather than ``-J``: ssh does not pass ``-o`` options on to
    the ssh it starts for ``-J``, which would check the jump host against ~/.ssh/known_hosts only."""
    trust = [
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=15",
    ]
    options = [*trust, "-o", "ServerAliveInterval=30"]
    if jump is not None:
        proxy = ["ssh", *trust, "-p", str(jump.port), "-l", jump.user, "-W", "[%h]:%p", jump.host]
        options += ["-o", "ProxyCommand=" + " ".join(shlex.quote(part) for part in proxy)]
    return options


@dataclass(frozen=True)
class HostArgs:
    server: Server
    access: Access
    ssh_private_key: Optional[pulumi.Input[str]] = None
    # Log driver and sizes for every container on the server (stack config ``logs``).
    logs: Logs = Logs()
    # dockerd's ``registry-mirrors``: where it asks for Docker Hub images first (the mirror's URL).
    registry_mirrors: tuple[str, ...] = ()


DAEMON_JSON = "/etc/docker/daemon.json"


def log_defaults_script(
    name: str, logs: Logs, daemon_json: str = DAEMON_JSON, restart: bool = True, registry_mirrors: Sequence[str] = ()
) -> str:
    """Docker's default log driver and sizes in ``daemon_json``, for every container the program does
    not create itself (compose projects, swarm tasks), and its ``registry-mirrors`` (none: the key is
    removed); dockerd restarted once when they change."""
    return render(
        "docker-log-defaults.sh",
        f"docker-log-defaults[{name}]",
        SERVER=name,
        DAEMON_JSON=daemon_json,
        LOG_DRIVER=logs.driver,
        LOG_OPTS=json.dumps(logs.options(), sort_keys=True),
        REGISTRY_MIRRORS=json.dumps(list(registry_mirrors)),
        RESTART="yes" if restart else "no",
    )


def preflight_script(name: str, server: Server, warn_percent: int = Logs().data_root_warn_percent) -> str:
    """Report Docker's version, memory and CPUs as JSON; fail clearly when Docker is unusable or the
    machine is smaller than ``servers.<name>`` declares (capacity planning relied on that figure)."""
    minimum_mib = int(server.memory_mib * MEMORY_TOLERANCE)
    return render(
        "preflight.sh",
        f"preflight[{name}]",
        SERVER=name,
        DECLARED_MIB=server.memory_mib,
        MINIMUM_MIB=minimum_mib,
        DECLARED_CPUS=server.cpus,
        WARN_PERCENT=warn_percent,
    )


class Host(pulumi.ComponentResource):
    """A server of the deployment: its connections, its Docker provider and its preflight."""

    name: ServerName
    spec: Server
    private_ip: pulumi.Output[str]
    connection: command.remote.ConnectionArgs
    docker: docker.Provider
    preflight: command.remote.Command
    log_defaults: command.remote.Command
    facts: pulumi.Output[dict[str, Any]]
    logs: Logs
    # What a Docker Hub pull on this server waits for (the mirror answering); see ``pull_through``.
    hub_pull_gate: list[pulumi.Resource]

    def __init__(self, name: ServerName, args: HostArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:host:Host", name, None, opts)
        self.name = name
        self.spec = args.server
        self.private_ip = pulumi.Output.from_input(args.server.private_ip)
        address = ssh_address(args.server, args.access)
        jump = args.access.jump_host

        self.connection = command.remote.ConnectionArgs(
            host=address,
            port=args.server.ssh_port,
            user=args.server.ssh_user,
            private_key=args.ssh_private_key,
            host_key=pinned_key(args.server.host_key) if args.server.host_key else None,
            proxy=command.remote.ProxyConnectionArgs(
                host=jump.host,
                port=jump.port,
                user=jump.user,
                private_key=args.ssh_private_key,
                host_key=pinned_key(jump.host_key) if jump.host_key else None,
            )
            if jump
            else None,
        )

        self.preflight = command.remote.Command(
            f"{name}-preflight",
            connection=self.connection,
            create=preflight_script(name, args.server, args.logs.data_root_warn_percent),
            # The preflight re-runs when the declared server changes, not on every `up`.
            triggers=[args.server.model_dump_json()],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.facts = self.preflight.stdout.apply(lambda out: json.loads(out) if out else {})

        self.logs = args.logs
        self.hub_pull_gate = []
        self.log_defaults = command.remote.Command(
            f"{name}-docker-log-defaults",
            connection=self.connection,
            create=log_defaults_script(name, args.logs, registry_mirrors=args.registry_mirrors),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )

        # The Docker CLI's ssh transport uses the local ssh client: keys come from the SSH agent, host
        # keys only from a known_hosts rendered from config with this server's (and the jump host's) key.
        known_hosts = write_known_hosts(
            pulumi.get_stack(), name, render_known_hosts({name: args.server}, args.access)
        )
        self.docker = docker.Provider(
            f"{name}-docker",
            host=f"ssh://{args.server.ssh_user}@{address}:{args.server.ssh_port}",
            ssh_opts=docker_ssh_opts(known_hosts, jump),
            # Everything created through this provider waits for the preflight to pass, and for the
            # log defaults (whose change restarts dockerd once).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight, self.log_defaults]),
        )

        self.register_outputs(
            {"privateIp": self.private_ip, "sshAddress": address, "facts": self.facts}
        )

    def pull_through(self, ready: pulumi.Resource) -> None:
        """Make every Docker Hub pull registered on this server from now on wait for ``ready`` (the mirror
        answering), so that it goes through the mirror rather than to Docker Hub. What registered before
        (the mirror's own image) pulls from Docker Hub: dockerd falls back to it while no mirror answers."""
        self.hub_pull_gate.append(ready)

    def pull_options(self, parent: pulumi.Resource, ref: str, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for the Docker resource that pulls image ``ref`` on this server: a Docker Hub image
        waits for the mirror (``pull_through``); others come from their own registry."""
        return self.docker_options(parent, depends_on=[*self.pull_waits_for(ref), *kwargs.pop("depends_on", [])], **kwargs)

    def pull_waits_for(self, ref: str) -> list[pulumi.Resource]:
        """What pulling image ``ref`` on this server waits for: the mirror for a Docker Hub image (also
        for a script that pulls it, ``docker run`` for instance), nothing for another registry's."""
        return list(self.hub_pull_gate) if image_registry(ref) == DOCKER_HUB else []

    def docker_options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a Docker resource on this server, owned by ``parent``."""
        return pulumi.ResourceOptions(parent=parent, provider=self.docker, **kwargs)

    def command_options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a remote command on this server: it runs after the preflight passed and the log
        defaults are in place (a change restarts dockerd, which a command using docker meanwhile would
        meet half-way)."""
        depends_on = [self.log_defaults, *kwargs.pop("depends_on", [])]
        return pulumi.ResourceOptions(parent=parent, depends_on=depends_on, **kwargs)


def build_hosts(
    servers: Mapping[ServerName, Server],
    access: Access,
    ssh_private_key: Optional[pulumi.Input[str]],
    logs: Logs = Logs(),
    registry_mirrors: tuple[str, ...] = (),
) -> dict[ServerName, Host]:
    return {
        name: Host(
            name,
            HostArgs(server=server, access=access, ssh_private_key=ssh_private_key, logs=logs, registry_mirrors=registry_mirrors),
        )
        for name, server in servers.items()
    }


@dataclass(frozen=True)
class BuildInputs:
    """What a backing service's ``build`` is given: the stack config (it takes its own section and the
    versions it pins), the servers, and the book its credentials go to."""

    config: StackConfig
    hosts: Mapping[ServerName, Host]
    book: CredentialBook
