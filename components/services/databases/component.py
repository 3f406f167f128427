"""db1 and db2: one ``DatabaseServer`` per database server turns its catalogue entries into containers.

What runs where, the host ports and the memory come from ``config.databases`` (the catalogue in
``components/services/databases/catalogue.py`` with the stack's overrides, already validated). Every service gets its own
container per engine, its own generated password per engine, and a map of the environment variables
it expects (``service_env``), which goes to the ``CredentialBook`` for Vault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, data_volume, pinned_image, private_port, service_container
from components.shared import shell
from components.shared.model import ServerName
from components.shared.publishing import CredentialBook

from .catalogue import DATABASE_SERVERS, ENGINES, PASSWORD_LENGTH, Container, Engine, Service, image_major, placeholders, render
from .settings import Databases

# `up` waits this long for a new container's healthcheck to pass (Elasticsearch is the slow one).
HEALTHY_WITHIN_SECONDS = 300


@dataclass(frozen=True)
class DatabaseServerArgs:
    host: Host
    services: Sequence[Service]
    containers: Sequence[Container]
    # Pinned image per engine, from `versions`.
    images: Mapping[str, str]


def sysctl_check_script(server: str, minimums: Mapping[str, int]) -> str:
    """Fail, saying how to fix it, when a kernel setting an engine needs is below its minimum.

    Read-only: the operator decides how the host is tuned, this only refuses to start what would crash."""
    return shell.render(
        "database-sysctls.sh",
        f"database-sysctls[{server}]",
        SERVER=server,
        MINIMUMS="\n".join(f"{key} {minimum}" for key, minimum in sorted(minimums.items())),
    )


class DatabaseServer(pulumi.ComponentResource):
    """The containers of every service placed on one database server, and what their clients need."""

    service_env: dict[str, dict[str, pulumi.Output[str]]]
    endpoints: dict[str, dict[str, dict[str, pulumi.Input]]]

    def __init__(self, name: str, args: DatabaseServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:data:DatabaseServer", name, None, opts)
        host = args.host
        engines = sorted({c.engine for c in args.containers})
        images = {engine: pinned_image(host, self, f"{host.name}-{engine}-image", args.images[engine]) for engine in engines}
        self._images = args.images

        minimums: dict[str, int] = {}
        for container in args.containers:
            minimums.update(container.spec.host_sysctl_minimums)
        kernel_ready: list[pulumi.Resource] = []
        if minimums:
            kernel_ready.append(
                command.remote.Command(
                    f"{host.name}-database-sysctls",
                    connection=host.connection,
                    create=sysctl_check_script(host.name, minimums),
                    triggers=[json.dumps(minimums, sort_keys=True)],
                    opts=host.command_options(self),
                )
            )

        facets: dict[tuple[str, str], dict[str, pulumi.Output[str]]] = {}
        self.endpoints = {}
        for container in args.containers:
            password = _password(f"{host.name}-{container.name}-password", container.spec, self)
            secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
            needs = list(kernel_ready) if container.spec.host_sysctl_minimums else []
            if container.spec.data_path_from_major:
                needs.append(self._major_check(host, container, images[container.engine]))
            running = self._container(host, container, images[container.engine], secret_password, needs)
            applied = self._apply_password(host, container, running, secret_password)
            # Clients (Vault, hence Jenkins) get the password only once the running server accepts it.
            published: pulumi.Output[str] = pulumi.Output.secret(
                pulumi.Output.all(applied.id, secret_password).apply(lambda values: str(values[1]))
            )
            facets[(container.service, container.engine)] = _facets(container, host.private_ip, published)
            self.endpoints.setdefault(container.service, {})[container.engine] = {
                "container": container.name,
                "host": host.private_ip,
                "port": container.host_port,
            }

        self.service_env = {
            service.name: {
                key: _env_value(template, service.name, facets)
                for key, template in service.env.items()
            }
            for service in args.services
        }
        self.register_outputs({"endpoints": self.endpoints})

    def _apply_password(
        self, host: Host, container: Container, running: docker.Container, password: pulumi.Output[str]
    ) -> command.remote.Command:
        """The engine's password script (catalogue ``password_script``), run whenever the password or the
        container changes: the running server accepts the current password, whatever it was created with."""
        values = container.container_values()
        inputs = {key: render(template, values) for key, template in container.spec.password_inputs.items()}
        return command.remote.Command(
            f"{host.name}-{container.name}-password",
            connection=host.connection,
            create=shell.render(container.spec.password_script, f"password[{container.name}]", CONTAINER=container.name, **inputs),
            stdin=_secret_line(password),
            # The password is on stdin; it never comes back as the command's output or environment.
            add_previous_output_in_env=False,
            triggers=[running.id],
            opts=host.command_options(self, depends_on=[running]),
        )

    def _major_check(self, host: Host, container: Container, image: docker.RemoteImage) -> command.remote.Command:
        """Refuse, before the container is replaced, an image whose major version differs from the data
        directory already on the volume: a major upgrade is pg_upgrade or a dump and restore."""
        ref = self._images[container.engine]
        return command.remote.Command(
            f"{host.name}-{container.name}-major-check",
            connection=host.connection,
            create=major_check_script(host.name, container, ref),
            triggers=[ref],
            opts=host.command_options(self, depends_on=[image]),
        )

    def _container(
        self,
        host: Host,
        container: Container,
        image: docker.RemoteImage,
        password: pulumi.Output[str],
        depends_on: list[pulumi.Resource],
    ) -> docker.Container:
        spec = container.spec
        values = container.container_values()
        volume = data_volume(host, self, f"{host.name}-{container.name}-data", f"{container.name}-data")
        return service_container(
            host,
            self,
            f"{host.name}-{container.name}",
            name=container.name,
            image=image,
            memory_mib=container.memory_mib,
            healthcheck=Healthcheck(
                tests=[render(part, values) for part in spec.healthcheck],
                start_period=spec.start_period,
                timeout="10s",
                retries=5,
            ),
            ports=[private_port(host, spec.container_port, container.host_port, protocol="tcp")],
            depends_on=depends_on,
            hostname=container.name if spec.fixed_hostname else None,
            envs=_environment(spec, values, password),
            command=[render(part, values) for part in spec.command] or None,
            uploads=[
                docker.ContainerUploadArgs(
                    file=file.path,
                    content=pulumi.Output.secret(password.apply(partial(_render_with_password, file.template, values))),
                    owner=file.owner,
                    group=file.group,
                    permissions=file.mode,
                )
                for file in spec.files
            ] or None,
            wait=True,
            wait_timeout=HEALTHY_WITHIN_SECONDS,
            memory_swap=container.memory_mib,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=spec.mount_path(self._images[container.engine]))],
        )


def major_check_script(server: str, container: Container, image: str) -> str:
    """The remote check that the data volume of ``container`` holds no other major version than ``image``'s."""
    major = image_major(image)
    if major is None:
        raise ValueError(f"{image!r} has no version tag to read a major version from")
    return shell.render(
        "postgres-major-check.sh",
        f"postgres-major-check[{server}/{container.name}]",
        CONTAINER=container.name,
        VOLUME=f"{container.name}-data",
        IMAGE=image,
        MAJOR=major,
        MOUNT_PATH=container.spec.mount_path(image),
    )


def _password(name: str, spec: Engine, parent: pulumi.Resource) -> random.RandomPassword:
    """A generated password: letters and digits, plus the engine's required specials if it has any."""
    if not spec.password_specials:
        return random.RandomPassword(name, length=PASSWORD_LENGTH, special=False, opts=pulumi.ResourceOptions(parent=parent))
    return random.RandomPassword(
        name,
        length=PASSWORD_LENGTH,
        special=True,
        override_special=spec.password_specials,
        min_special=1,
        min_upper=1,
        min_lower=1,
        min_numeric=1,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _render_with_password(template: str, values: Mapping[str, str], password: str) -> str:
    return render(template, {**values, "password": password})


def _environment(spec: Engine, values: Mapping[str, str], password: pulumi.Output[str]) -> list[pulumi.Input[str]]:
    envs: list[pulumi.Input[str]] = []
    for key, template in spec.environment.items():
        if "password" in placeholders(template):
            line: pulumi.Output[str] = pulumi.Output.secret(password.apply(partial(_env_line, key, template, values)))
            envs.append(line)
        else:
            envs.append(f"{key}={render(template, values)}")
    return envs


def _secret_line(value: pulumi.Output[str]) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.concat(value, "\n"))


def _env_line(key: str, template: str, values: Mapping[str, str], password: str) -> str:
    return f"{key}={render(template, {**values, 'password': password})}"


def _facets(container: Container, private_ip: pulumi.Output[str], password: pulumi.Output[str]) -> dict[str, pulumi.Output[str]]:
    """Every facet of one container as its clients see it: the server's private IP and the host port."""
    spec = container.spec
    base = {**container.identity(), "port": str(container.host_port)}
    result: dict[str, pulumi.Output[str]] = {
        "host": private_ip,
        "password": password,
        **{k: pulumi.Output.from_input(v) for k, v in base.items()},
    }
    # Facets without the password are computed without it, so they stay plain (a JDBC URL, a user name).
    public = private_ip.apply(lambda h: spec.derive({**base, "host": h}))
    secret = pulumi.Output.all(private_ip, password).apply(lambda hp: spec.derive({**base, "host": hp[0], "password": hp[1]}))
    for facet in spec.derived:
        if facet in spec.secret_facets:
            result[facet] = pulumi.Output.secret(secret.apply(itemgetter(facet)))
        else:
            result[facet] = public.apply(itemgetter(facet))
    return result


def _env_value(
    template: str,
    service: str,
    facets: Mapping[tuple[str, str], Mapping[str, pulumi.Output[str]]],
) -> pulumi.Output[str]:
    names = placeholders(template)
    if not names:
        return pulumi.Output.from_input(template)
    secret = False
    parts: list[pulumi.Output[str]] = []
    for name in names:
        engine, _, facet = name.partition(".")
        secret = secret or facet in ENGINES[engine].secret_facets
        parts.append(facets[(service, engine)][facet])
    value = pulumi.Output.all(*parts).apply(lambda resolved: render(template, dict(zip(names, resolved, strict=True))))
    return pulumi.Output.secret(value) if secret else value


@dataclass(frozen=True)
class DatabaseServers:
    """Every ``DatabaseServer``, by server."""

    servers: Mapping[str, DatabaseServer]

    @property
    def exports(self) -> dict[str, object]:
        # Where each service's databases listen (no credentials: those are in Vault, kv/samarth/<service>).
        return {"databases": {service: ends for server in self.servers.values() for service, ends in server.endpoints.items()}}


def build_databases(
    settings: Databases, images: Mapping[str, Optional[str]], hosts: Mapping[ServerName, Host], book: CredentialBook
) -> DatabaseServers:
    """One ``DatabaseServer`` per database server that has services, with each engine's pinned image
    (``images``: ``versions``, by engine); every service's env goes to ``book``."""
    services = settings.catalogue()
    all_containers = settings.containers()
    servers: dict[str, DatabaseServer] = {}
    for server in DATABASE_SERVERS:
        placed = [c for c in all_containers if c.server == server]
        if not placed:
            continue
        servers[server] = DatabaseServer(
            f"{server}-databases",
            DatabaseServerArgs(
                host=hosts[server],
                services=[s for s in services if s.server == server],
                containers=placed,
                images={c.engine: image for c in placed if (image := images[c.engine]) is not None},
            ),
        )
        for service, env in servers[server].service_env.items():
            book.add(service, env)
    return DatabaseServers(servers)
