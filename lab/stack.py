"""The stack file that points the program at lab hosts (``Pulumi.lab.yaml``).

Everything but the servers, how to reach them and when the timers run is copied from the staging stack,
so the lab rehearses what staging will get (versions and every component's settings).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from components.config import StackConfig
from components.deployment import load_deployment
from components.shared.model import SERVER_NAMES
from tools.offline import engine_values, read_yaml

from . import hub
from .core import ROOT, LabHost

PROJECT = "samarth-infra"
STAGING = ROOT / "Pulumi.staging.yaml"
LAB_STACK = ROOT / "Pulumi.lab.yaml"


def machine_size() -> tuple[int, int]:
    """Memory (MiB) and CPUs of this machine, which every lab host reports as its own."""
    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return kib // 1024, os.cpu_count() or 1


def lab_server(host: LabHost, base: Mapping[str, Any]) -> dict[str, Any]:
    """``servers.<name>`` for a server played by ``host``: staging's size, capped at the machine's,
    since the preflight compares the declared size with what the host reports."""
    memory_mib, cpus = machine_size()
    server: dict[str, Any] = {
        "privateIp": host.address,
        "sshUser": host.user,
        "sshPort": 22,
        "memoryMib": min(int(base.get("memoryMib", memory_mib)), memory_mib),
        "cpus": min(int(base.get("cpus", cpus)), cpus),
    }
    if "publicAddress" in base:
        server["publicAddress"] = host.address
    if host.host_key:
        server["hostKey"] = host.host_key
    return server


def servers_section(assignments: Mapping[str, LabHost], base_servers: Mapping[str, Any]) -> dict[str, Any]:
    """The ``servers`` value: servers in ``assignments`` point at their lab host, others keep ``base_servers``."""
    servers = {name: dict(value) for name, value in base_servers.items()}
    for name, host in assignments.items():
        servers[name] = lab_server(host, base_servers.get(name, {}))
    return servers


# What the lab stack leaves out, and why: these install with Docker Compose 2.32 or newer from images
# that no lab machine can pull or build (Debian 12's compose plugin is older).
NOT_ON_THE_LAB = {
    "sentry": "Sentry's self-hosted install needs Docker Compose 2.32+ and some thirty images that cannot be built here",
    "posthog": "PostHog's compose project needs Docker Compose 2.24.4+ and PostHog's images, which cannot be built here",
}

# Pins the lab stack sets to what the lab serves, where the major version differs from staging's and the
# program checks it: Debian 12's PostgreSQL is 15 (lab/rehearsal_images.py), and the program's major-version
# check refuses a 15 data directory under a 16 pin.
LAB_VERSIONS = {"postgres": "postgres:15.18"}

# When the lab's certificate renewal and backup timers run (OnCalendar=).
LAB_TIMER_SCHEDULE = "minutely"


def timers_fire_soon(config: dict[str, Any]) -> None:
    """Set the certificate renewal timer and every backup timer of ``config`` (a stack file's config
    section) to run every minute, the renewal without random delay, so that a lab test can watch systemd
    fire them for real soon after the deploy that installs them.

    Not once at a time two minutes after the stack file is written: the deploy runs longer than that, and
    a timer installed after its only run was due never fires. A run every minute is due within a minute of
    any moment; systemd may hold it back by its default AccuracySec= of a minute, so the renewal runs at
    most two minutes after its timer is installed; the backup timers likewise, with no random delay.
    """
    edge = config.get(f"{PROJECT}:edge") or {}
    tls = edge.get("tls") or {}
    if tls.get("acme") is not None:
        acme = {**tls["acme"], "renewalSchedule": LAB_TIMER_SCHEDULE, "renewalRandomDelay": 0}
        config[f"{PROJECT}:edge"] = {**edge, "tls": {**tls, "acme": acme}}
    backups = config.get(f"{PROJECT}:backups") or {}
    config[f"{PROJECT}:backups"] = {**backups, "schedules": {}, "defaultSchedule": LAB_TIMER_SCHEDULE, "randomDelay": 0}


@dataclass(frozen=True)
class LabCA:
    """The lab's ACME CA (lab.rehearsal.lab_ca) as the lab stack names it."""

    directory_url: str
    ca_certificate: str  # its TLS root on the application machine (edge.tls.acme.caCertificate)
    issuer_roots: Path  # on this machine: the root it issues under (edge.tls.issuerRoots)


def stack_document(
    assignments: Mapping[str, LabHost], base: Path = STAGING, pulumi_from: Optional[str] = None,
    acme: Optional[LabCA] = None, deploy_key: Optional[str] = None,
) -> dict[str, Any]:
    """The lab stack file's content: ``base``'s config with servers on lab hosts and no jump host, the
    timers due soon, ``LAB_VERSIONS`` pinned, the Docker Hub mirror pulling from the lab's stand-in for
    Docker Hub on the application machine, and what cannot run on the lab (``NOT_ON_THE_LAB``) disabled;
    ``pulumi_from`` (the lab bridge's address, where Pulumi and the operator run) is what the host
    firewall lets in for SSH and Pulumi's providers, and where the lab's Jenkins job runs, with
    ``deploy_key`` (the public half of its key) as ``swarm.deployKey``; ``acme`` (the lab's own CA)
    replaces the base's ACME directory, which the lab cannot reach."""
    document = read_yaml(base) or {}
    config: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        # Secure values are encrypted for the base stack only: the lab stack cannot read them.
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        config[key] = value
    config[f"{PROJECT}:servers"] = servers_section(assignments, config.get(f"{PROJECT}:servers") or {})
    config[f"{PROJECT}:access"] = {"via": "private"}
    if acme is not None:
        edge = config.get(f"{PROJECT}:edge") or {}
        tls = edge.get("tls") or {}
        lab_acme = {**(tls.get("acme") or {}), "directoryUrl": acme.directory_url, "caCertificate": acme.ca_certificate}
        config[f"{PROJECT}:edge"] = {**edge, "tls": {**tls, "acme": lab_acme, "issuerRoots": str(acme.issuer_roots)}}
    timers_fire_soon(config)
    config[f"{PROJECT}:versions"] = {**(config.get(f"{PROJECT}:versions") or {}), **LAB_VERSIONS}
    observability = config.get(f"{PROJECT}:observability") or {}
    config[f"{PROJECT}:observability"] = {
        **observability, **{name: {**(observability.get(name) or {}), "enabled": False} for name in NOT_ON_THE_LAB},
    }
    if "application" in assignments:
        # No lab machine reaches Docker Hub: the mirror pulls through the lab's stand-in (lab/hub.py).
        mirror = config.get(f"{PROJECT}:mirror") or {}
        config[f"{PROJECT}:mirror"] = {**mirror, "remoteUrl": hub.url(assignments["application"])}
    if pulumi_from is not None:
        config[f"{PROJECT}:firewall"] = {
            **(config.get(f"{PROJECT}:firewall") or {}),
            "operators": [f"{pulumi_from}/32"],
            "pulumiFrom": [f"{pulumi_from}/32"],
            "jenkins": [f"{pulumi_from}/32"],
        }
        if deploy_key is not None:
            config[f"{PROJECT}:swarm"] = {**(config.get(f"{PROJECT}:swarm") or {}), "deployKey": deploy_key}
    return {"config": config}


def default_assignments(hosts: list[LabHost]) -> dict[str, LabHost]:
    """Six hosts play the six servers: by name where a host is named after a server, else in order."""
    by_name = {h.name: h for h in hosts}
    spare = [h for h in hosts if h.name not in SERVER_NAMES]
    assignments: dict[str, LabHost] = {}
    for server in SERVER_NAMES:
        if server in by_name:
            assignments[server] = by_name[server]
        elif spare:
            assignments[server] = spare.pop(0)
    return assignments


def validate_document(document: Mapping[str, Any]) -> StackConfig:
    """The stack file's config, or ``ConfigError`` when the program would refuse this stack file."""
    values, secure = engine_values(document)
    return load_deployment(PROJECT, LAB_STACK.stem.removeprefix("Pulumi."), values, secure).config


HEADER = """\
# Written by `python -m lab up`: the six servers are local lab machines (booted Debian on this
# machine), everything else is copied from Pulumi.staging.yaml. Not committed; `python -m lab down`
# deletes it. SSH: `ssh-add {key}` for remote commands, and `Include {ssh_config}` at the top of
# ~/.ssh/config for the Docker provider (it runs the plain ssh client).
"""


def write_stack_file(
    hosts: list[LabHost], path: Path = LAB_STACK, base: Path = STAGING, pulumi_from: Optional[str] = None,
    acme: Optional[LabCA] = None, deploy_key: Optional[str] = None,
) -> Path:
    """Validate and write the lab stack file; needs a host for each of the six servers."""
    assignments = default_assignments(hosts)
    missing = [s for s in SERVER_NAMES if s not in assignments]
    if missing:
        raise ValueError(
            f"the stack needs one lab host per server (their private IPs must differ); no host for: {', '.join(missing)}"
        )
    document = stack_document(assignments, base, pulumi_from, acme, deploy_key)
    header = HEADER.format(key=hosts[0].ssh_key_path, ssh_config=hosts[0].ssh_config)
    header += "".join(f"# {name} is disabled: {reason}.\n" for name, reason in NOT_ON_THE_LAB.items())
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return path
