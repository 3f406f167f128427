"""The Docker Hub mirror on the application server: distribution's registry in proxy mode
(``proxy.remoteurl``), published on the private IP only, reachable by the six servers' dockerd (the host
firewall), with no login of its own: it serves public Docker Hub content, or what ``mirror.hubUsername``
may pull when an account is configured (docs/mirror.md says what that exposes).

Built first, before any other service registers a pull: every later Docker Hub pull waits for it to
answer (``Host.pull_through``), so it goes through the cache rather than to Docker Hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, data_volume, pinned_image, private_port, service_container
from components.shared import distribution
from components.shared.distribution import CONFIG_PATH

from .settings import CONTAINER_PORT, PORT, STORAGE_PATH, MirrorSettings


def render_config(settings: MirrorSettings, http_secret: str, token: Optional[str] = None) -> str:
    """The mirror's config.yml: the registry's, with a ``proxy`` section (distribution v3.1.1
    docs/content/about/configuration.md, ``proxy``; docs/content/recipes/mirror.md) and no login."""
    proxy: dict[str, Any] = {"remoteurl": settings.remote_url, "ttl": settings.ttl}
    if settings.hub_username is not None and token is not None:
        proxy["username"] = settings.hub_username
        proxy["password"] = token
    return distribution.render("hub-mirror", STORAGE_PATH, CONTAINER_PORT, http_secret, sections={"proxy": proxy})


@dataclass(frozen=True)
class MirrorArgs:
    host: Host
    image: str
    settings: MirrorSettings
    # dockerHubToken: the account's token, with settings.hub_username; None: anonymous pulls.
    hub_token: Optional[pulumi.Input[str]] = None


class Mirror(pulumi.ComponentResource):
    """The pull-through cache; ``container`` exists once it answers its healthcheck: what a Docker Hub
    pull on any server waits for."""

    container: docker.Container
    url: str

    def __init__(self, name: str, args: MirrorArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:mirror:Mirror", name, None, opts)
        host = args.host
        settings = args.settings
        http_secret = random.RandomPassword(f"{name}-http-secret", length=48, special=False, opts=pulumi.ResourceOptions(parent=self))
        token = pulumi.Output.secret(args.hub_token) if args.hub_token is not None else pulumi.Output.from_input(None)
        config: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(http_secret.result, token).apply(lambda values: render_config(settings, values[0], values[1]))
        )

        # Registered before any server's Docker Hub pulls wait for the mirror: it comes from Docker Hub itself.
        image = pinned_image(host, self, f"{name}-image", args.image)
        data = data_volume(host, self, f"{name}-data", f"{name}-data")
        self.container = service_container(
            host,
            self,
            f"{name}-container",
            name=name,
            image=image,
            memory_mib=settings.memory_mib,
            healthcheck=Healthcheck(
                tests=distribution.healthcheck_command(),
                start_period="10s",
            ),
            ports=[private_port(host, CONTAINER_PORT, PORT)],
            command=[CONFIG_PATH],
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=STORAGE_PATH)],
            # The HTTP secret and the Docker Hub token: root only, as the registry runs. Uploaded through
            # the Docker API, on no command line.
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=config, permissions="0400")],
            wait=True,
            wait_timeout=60,
        )
        self.url = f"http://{host.spec.private_ip}:{PORT}"
        self.exports = {"hubMirror": {"url": self.url, "remote": settings.remote_url, "account": settings.hub_username or "anonymous"}}
        self.register_outputs({"url": self.url})
