"""The lab: booted Debian machines (systemd, sshd, dockerd) under systemd-nspawn, for rehearsals and real tests."""

from .core import (
    DEFAULT_PREFIX,
    DEFAULT_STATE,
    DEFAULT_SUBNET,
    Lab,
    LabError,
    LabHost,
    PublicClient,
    docker,
    free_port,
    free_subnet,
    machine_lock,
    run_command,
    ssh,
    ssh_command,
    temporary_lab,
    unavailable,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STATE",
    "DEFAULT_SUBNET",
    "Lab",
    "LabError",
    "LabHost",
    "PublicClient",
    "docker",
    "free_port",
    "free_subnet",
    "machine_lock",
    "run_command",
    "ssh",
    "ssh_command",
    "temporary_lab",
    "unavailable",
]
