"""The servers (``servers``), how Pulumi reaches them (``access``) and their logs (``logs``): what every
server has, whatever runs on it. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal, Optional

from pydantic import Field

from components.shared.model import Address, HostKey, Model, Port, PrivateIPv4
from components.shared.service import JUMP_HOST, OPERATORS, PULUMI, Declaration, Listener, Service

if TYPE_CHECKING:
    from components.config import StackConfig

# The comment the committed stacks' example keys carry: they are not any server's key.
EXAMPLE_HOST_KEY_MARK = "example-key-replace-with-tools.hostkeys"
HOST_KEYS_COMMAND = "python -m tools.hostkeys --stack {stack}"


class Server(Model):
    """One machine of the deployment, as the operator declares it."""

    private_ip: PrivateIPv4 = Field(alias="privateIp")
    public_address: Optional[Address] = Field(default=None, alias="publicAddress")
    ssh_user: str = Field(default="samarth-devops", alias="sshUser", min_length=1, pattern=r"^[a-z_][a-z0-9_.-]*$")
    ssh_port: Port = Field(default=22, alias="sshPort")
    memory_mib: int = Field(alias="memoryMib", ge=512)
    cpus: int = Field(ge=1)
    # The server's SSH host key, pinned: every connection (commands and Docker) refuses any other.
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")
    # Disk space the server offers to what the program keeps there (backup repositories); unset: not checked.
    disk_gib: Optional[int] = Field(default=None, alias="diskGib", ge=1)


class JumpHost(Model):
    host: Address
    user: str = Field(default="samarth-devops", min_length=1)
    port: Port = 22
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")


class Access(Model):
    """How the machine running Pulumi reaches the servers.

    The seed clones this repository on the application server, so by default every server is reached
    over its private IP. ``via: public`` uses each server's public address instead; a ``jumpHost``
    tunnels either through a bastion (``ssh -J``).
    """

    via: Literal["private", "public"] = "private"
    jump_host: Optional[JumpHost] = Field(default=None, alias="jumpHost")

LogSize = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,5}[kmg]$")]


class Logs(Model):
    """Bounded logs on every server (components/platform/host/component.py, docs/logs.md).

    Every container gets ``driver`` with ``maxSize`` per file and ``maxFile`` files: the program's own
    containers explicitly, and everything else (Sentry's and PostHog's compose projects, swarm tasks)
    through the Docker daemon's defaults in /etc/docker/daemon.json. ``json-file`` keeps `docker logs`
    readable by other tools; ``local`` is Docker's compact, compressed format. Vault's audit file is
    rotated by logrotate at ``auditMaxSize``, keeping ``auditKeep`` compressed files. The preflight warns
    when the filesystem of Docker's data root is more than ``dataRootWarnPercent`` full.
    """

    driver: Literal["json-file", "local"] = "json-file"
    max_size: LogSize = Field(default="10m", alias="maxSize")
    # 10m x 3 is what the database containers had before this setting: their inputs stay the same.
    max_file: int = Field(default=3, alias="maxFile", ge=1, le=100)
    audit_max_size: LogSize = Field(default="100m", alias="auditMaxSize")
    audit_keep: int = Field(default=14, alias="auditKeep", ge=1, le=365)
    data_root_warn_percent: int = Field(default=80, alias="dataRootWarnPercent", ge=1, le=99)

    def options(self) -> dict[str, str]:
        """The driver's options, as Docker names them (daemon.json ``log-opts``, ``--log-opt``)."""
        return {"max-size": self.max_size, "max-file": str(self.max_file)}



def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    """SSH on every server: the operators, the machine running Pulumi, and the jump host when there is one."""
    return Declaration(
        listeners=tuple(
            Listener(name, server.ssh_port, f"servers.{name}.sshPort", "SSH", (OPERATORS, PULUMI, JUMP_HOST), published=False, configured=True)
            for name, server in config.servers.items()
        )
    )


SERVICE = Service("servers", declare)
