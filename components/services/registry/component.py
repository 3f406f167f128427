"""The Docker Registry on the application server: htpasswd auth, private bind, public only via Nginx.

Nginx terminates TLS for the registry's public name, so Docker daemons trust it like any HTTPS
registry and no node needs `insecure-registries`. Two htpasswd users: the swarm logs in with
``server``/``username``/``password`` (the program's own, kept in Pulumi state only); Jenkins pushes as
``jenkins`` with a password of its own, published at ``kv/samarth/registry``, so either can be rotated
alone. (htpasswd auth knows no rights: every user it admits may pull and push.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, data_volume, pinned_image, private_port, service_container
from components.shared import distribution
from components.shared.distribution import CONFIG_PATH
from components.shared.publishing import CredentialBook

from .settings import MEMORY_MIB, PORT, STORAGE_PATH

USERNAME = "samarth"
# Jenkins' own user, for pushes (kv/samarth/registry).
JENKINS_USERNAME = "jenkins"
HTPASSWD_PATH = "/auth/htpasswd"


def htpasswd_line(user: str, digest: str) -> str:
    """One user of the htpasswd file: ``user:<bcrypt hash>``."""
    return f"{user}:{digest}\n"


def render_config(public_url: str, http_secret: str) -> str:
    """The registry's config.yml; listen addresses and paths are the container's."""
    return distribution.render(
        "registry",
        STORAGE_PATH,
        PORT,
        http_secret,
        # Behind Nginx: Location headers must name the public HTTPS address, not the private one.
        http={"host": public_url, "relativeurls": False},
        sections={"auth": {"htpasswd": {"realm": "samarth-registry", "path": HTPASSWD_PATH}}},
    )


@dataclass(frozen=True)
class RegistryArgs:
    host: Host
    image: str
    public_host: str
    book: CredentialBook


class Registry(pulumi.ComponentResource):
    """The registry (``versions.registry``, 3.x) with htpasswd auth; ``server``, ``username``, ``password``
    for `docker login`."""

    server: str
    username: str
    password: pulumi.Output[str]
    # Created once the registry answers its healthcheck: what a `docker login` must wait for.
    container: docker.Container

    def __init__(self, name: str, args: RegistryArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:registry:Registry", name, None, opts)
        host = args.host
        self.server = args.public_host
        self.username = USERNAME

        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
        jenkins = random.RandomPassword(f"{name}-jenkins-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
        http_secret = random.RandomPassword(f"{name}-http-secret", length=48, special=False, opts=pulumi.ResourceOptions(parent=self))
        self.password = pulumi.Output.secret(password.result)
        htpasswd: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(password.bcrypt_hash, jenkins.bcrypt_hash).apply(
                lambda digests: htpasswd_line(USERNAME, digests[0]) + htpasswd_line(JENKINS_USERNAME, digests[1])
            )
        )
        config: pulumi.Output[str] = pulumi.Output.secret(http_secret.result.apply(lambda s: render_config(f"https://{self.server}", s)))

        image = pinned_image(host, self, f"{name}-image", args.image)
        data = data_volume(host, self, f"{name}-data", f"{name}-data")
        self.container = service_container(
            host,
            self,
            f"{name}-container",
            name=name,
            image=image,
            memory_mib=MEMORY_MIB,
            healthcheck=Healthcheck(
                tests=distribution.healthcheck_command(),
                start_period="10s",
            ),
            ports=[private_port(host, PORT)],
            # The image's entrypoint runs `registry serve <file>` for a *.yml argument.
            command=[CONFIG_PATH],
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=STORAGE_PATH)],
            uploads=[
                # Both hold secrets (the HTTP secret, the password hash): root only, as the registry runs.
                docker.ContainerUploadArgs(file=CONFIG_PATH, content=config, permissions="0400"),
                docker.ContainerUploadArgs(file=HTPASSWD_PATH, content=htpasswd, permissions="0400"),
            ],
            # The swarm nodes log in right after: wait until the registry answers.
            wait=True,
            wait_timeout=60,
        )

        # Jenkins' own user, not the swarm's: the applications' deployments push with it.
        args.book.add(
            "registry",
            {
                "DOCKER_SERVER": self.server,
                "DOCKER_USERNAME": JENKINS_USERNAME,
                "DOCKER_PASSWORD": pulumi.Output.secret(jenkins.result),
            },
        )
        self.exports = {"registry": {"server": self.server, "username": self.username}}
        self.register_outputs({"server": self.server, "username": self.username})
