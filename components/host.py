"""One server: how Pulumi reaches it (SSH for commands, SSH for Docker) and a preflight check.

Every other component receives ``Host`` objects, never raw addresses: the private IP a database binds
to, the connection a script runs over and the Docker provider a container is created with all come
from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from .config import Access, Server
from .shell import render

# A VM reports a little less than its nominal memory (kernel, firmware reservations).
MEMORY_TOLERANCE = 0.9


@dataclass(frozen=True)
class HostArgs:
    server: Server
    access: Access
    ssh_private_key: Optional[pulumi.Input[str]] = None


def preflight_script(name: str, server: Server) -> str:
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
    )


class Host(pulumi.ComponentResource):
    """A server of the deployment: its connections, its Docker provider and its preflight."""

    name: str
    spec: Server
    private_ip: pulumi.Output[str]
    connection: command.remote.ConnectionArgs
    docker: docker.Provider
    preflight: command.remote.Command
    facts: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: HostArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:host:Host", name, None, opts)
        self.name = name
        self.spec = args.server
        self.private_ip = pulumi.Output.from_input(args.server.private_ip)
        address = args.server.public_address if args.access.via == "public" else args.server.private_ip
        assert address is not None  # config validation guarantees it for via=public
        jump = args.access.jump_host

        self.connection = command.remote.ConnectionArgs(
            host=address,
            port=args.server.ssh_port,
            user=args.server.ssh_user,
            private_key=args.ssh_private_key,
            host_key=args.server.host_key,
            proxy=command.remote.ProxyConnectionArgs(
                host=jump.host, port=jump.port, user=jump.user, private_key=args.ssh_private_key
            )
            if jump
            else None,
        )

        self.preflight = command.remote.Command(
            f"{name}-preflight",
            connection=self.connection,
            create=preflight_script(name, args.server),
            # The preflight re-runs when the declared server changes, not on every `up`.
            triggers=[args.server.model_dump_json()],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.facts = self.preflight.stdout.apply(lambda out: json.loads(out) if out else {})

        # The Docker CLI's ssh transport uses the local ssh client: keys come from the SSH agent.
        ssh_opts = ["-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=30", "-o", "BatchMode=yes"]
        if jump:
            ssh_opts += ["-J", f"{jump.user}@{jump.host}:{jump.port}"]
        self.docker = docker.Provider(
            f"{name}-docker",
            host=f"ssh://{args.server.ssh_user}@{address}:{args.server.ssh_port}",
            ssh_opts=ssh_opts,
            # Everything created through this provider waits for the preflight to pass.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )

        self.register_outputs(
            {"privateIp": self.private_ip, "sshAddress": address, "facts": self.facts}
        )

    def docker_options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a Docker resource on this server, owned by ``parent``."""
        return pulumi.ResourceOptions(parent=parent, provider=self.docker, **kwargs)

    def command_options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a remote command on this server: it runs after the preflight passed."""
        depends_on = [self.preflight, *kwargs.pop("depends_on", [])]
        return pulumi.ResourceOptions(parent=parent, depends_on=depends_on, **kwargs)


def build_hosts(
    servers: dict[str, Server], access: Access, ssh_private_key: Optional[pulumi.Input[str]]
) -> dict[str, Host]:
    return {
        name: Host(name, HostArgs(server=server, access=access, ssh_private_key=ssh_private_key))
        for name, server in servers.items()
    }
