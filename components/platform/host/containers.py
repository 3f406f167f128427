"""The one way to run a service container: the platform's rules, written once.

Every service container on a server follows the same rules, so a component states only what is its
own (image, memory, probe, ports, mounts):
- the image is pinned (from ``versions``) and kept on the host when the resource goes;
- data lives on named volumes that are protected and retained: removing data is a manual decision;
- ``restart="unless-stopped"``, an explicit ``network_mode``, a memory limit and a real healthcheck;
- published ports bind the server's private IP (Nginx's public 80/443 are the one exception, made
  explicitly in ``components/services/edge/component.py``);
- logs bounded by the server's log driver and sizes (stack config ``logs``);
- ``delete_before_replace``: a fixed container name and host ports cannot be held by two containers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_docker as docker

from .component import Host

HEALTHCHECK_INTERVAL = "15s"


@dataclass(frozen=True)
class Healthcheck:
    """Docker's probe: ``tests`` as in ``HEALTHCHECK`` (``["CMD", ...]`` or ``["CMD-SHELL", "..."]``)."""

    tests: Sequence[str]
    start_period: str
    timeout: str = "5s"
    retries: int = 3


def pinned_image(host: Host, parent: pulumi.Resource, resource_name: str, ref: str) -> docker.RemoteImage:
    """The image ``ref`` (pinned in ``versions``) on ``host``; kept there when the resource goes. A Docker
    Hub image waits for the mirror (``Host.pull_through``)."""
    return docker.RemoteImage(resource_name, name=ref, keep_locally=True, opts=host.pull_options(parent, ref))


def data_volume(host: Host, parent: pulumi.Resource, resource_name: str, name: str) -> docker.Volume:
    """A named volume for data: it outlives the container and even the stack."""
    return docker.Volume(
        resource_name, name=name, opts=host.docker_options(parent, protect=True, retain_on_delete=True)
    )


def private_port(
    host: Host, internal: int, external: Optional[int] = None, protocol: Optional[str] = None
) -> docker.ContainerPortArgs:
    """``internal`` published on the server's private IP only (host port ``external``, default the same)."""
    return docker.ContainerPortArgs(
        internal=internal, external=internal if external is None else external, ip=host.private_ip, protocol=protocol
    )


def service_container(
    host: Host,
    parent: pulumi.Resource,
    resource_name: str,
    *,
    name: str,
    image: docker.RemoteImage,
    memory_mib: int,
    healthcheck: Healthcheck,
    ports: Sequence[docker.ContainerPortArgs] = (),
    network_mode: str = "bridge",
    depends_on: Sequence[pulumi.Resource] = (),
    **extra: Any,
) -> docker.Container:
    """The container ``name`` from ``image`` under the platform's rules; ``extra`` goes to ``docker.Container``."""
    return docker.Container(
        resource_name,
        name=name,
        image=image.image_id,
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(healthcheck.tests),
            interval=HEALTHCHECK_INTERVAL,
            timeout=healthcheck.timeout,
            retries=healthcheck.retries,
            start_period=healthcheck.start_period,
        ),
        memory=memory_mib,
        # Bounded logs (stack config ``logs``); the daemon's defaults cover containers made elsewhere.
        log_driver=host.logs.driver,
        log_opts=host.logs.options(),
        restart="unless-stopped",
        network_mode=network_mode,
        ports=list(ports) or None,
        opts=host.docker_options(parent, delete_before_replace=True, depends_on=list(depends_on)),
        **extra,
    )
