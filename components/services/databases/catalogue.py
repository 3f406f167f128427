"""The backing services of db1 and db2, as data: which service needs which engines on which server,
and the environment variables each service expects, in its own names.

No Pulumi here. ``components.config`` merges the stack's ``databases`` section into ``CATALOGUE``
and validates it; ``components.data`` turns the result into containers. Adding a service is one
``Service`` entry below (or one entry under ``databases.services`` in a stack file).

Templates
---------
A service's ``env`` values are text with ``{engine.facet}`` placeholders, e.g. ``"{postgres.url}"``;
the facets an engine offers are ``Engine.facets``. Engine container settings (``environment``,
``command``, ``healthcheck``) are text with ``{name}`` placeholders over ``Container.container_values``
plus ``{password}`` (only in ``environment`` and ``files``, which are passed as secrets). No password
is ever on a command line (``ps`` shows it to every user of the host): an engine reads it from its
environment or from a ``SecretFile`` uploaded into the container, readable by the engine's user only.

Host ports
----------
Each container publishes its engine's port on the server's private IP. The host port is the
engine's base port plus the index of the service among the server's services using that engine, in
catalogue order (config-added services come after the catalogue, in the order written), unless
``hostPorts`` sets it explicitly. So on db2: Postgres 5432 (odk-adapter) .. 5438 (airflow), Redis
6379/6380/6381, RabbitMQ 5672/5673, OpenSearch 9200. Adding a service at the end never moves
another service's port; pin ``hostPorts`` before removing one from the middle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

DATABASE_SERVERS: tuple[Literal["db1"], Literal["db2"]] = ("db1", "db2")

# Generated passwords are alphanumeric, so they go into URLs without escaping.
PASSWORD_LENGTH = 32

@dataclass(frozen=True)
class SecretFile:
    """A file carrying the password, uploaded into the container and readable by ``owner`` only (the
    numeric user and group the image runs the reading process as)."""

    path: str
    template: str
    owner: str
    group: str
    mode: str = "0400"


@dataclass(frozen=True)
class Engine:
    name: str
    container_port: int
    memory_mib: int
    data_path: str
    # Per-instance identity the engine needs besides host, port and password ("user", "database", "vhost").
    identity: tuple[str, ...]
    # Facets derived from host, port, password and the identity (URLs and the like).
    derived: Mapping[str, str]
    environment: Mapping[str, str]
    healthcheck: tuple[str, ...]
    # The script (scripts/ beside this module) that makes the running server accept the password on its stdin,
    # or proves it does, before Vault publishes it; its inputs are templates over the container values
    # (CONTAINER is always given). Most images read their password only when they create their data.
    password_script: str
    password_inputs: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    files: tuple[SecretFile, ...] = ()
    # Its node name is part of its data (RabbitMQ): the container hostname must never change.
    fixed_hostname: bool = False
    start_period: str = "30s"
    # Kernel settings the host must provide, as minimum values.
    host_sysctl_minimums: Mapping[str, int] = field(default_factory=dict)
    # Where the data volume is mounted from a major version of the image on (``data_path`` before the
    # first entry). The official Postgres images from 18 on keep PGDATA under the major version
    # (/var/lib/postgresql/18/docker) and declare the volume at /var/lib/postgresql.
    data_path_from_major: Mapping[int, str] = field(default_factory=dict)
    # Characters the generated password draws one or more of besides letters and digits, for engines
    # that refuse a password without them; URL-unreserved, so URLs carrying the password stay valid.
    password_specials: str = ""

    def mount_path(self, image: str) -> str:
        """The data volume's mount point for ``image``, from its tag's major version."""
        major = image_major(image)
        path = self.data_path
        for since, candidate in sorted(self.data_path_from_major.items()):
            if major is not None and major >= since:
                path = candidate
        return path

    @property
    def facets(self) -> tuple[str, ...]:
        return ("host", "port", "password", *self.identity, *self.derived)

    @property
    def secret_facets(self) -> frozenset[str]:
        """Facets whose value carries the password (directly or through another facet)."""
        secret = {"password"}
        for facet, template in self.derived.items():
            if secret & set(placeholders(template)):
                secret.add(facet)
        return frozenset(secret)

    def derive(self, values: Mapping[str, str]) -> dict[str, str]:
        """The derived facets computable from ``values`` (host, port, identity, maybe the password);
        each may use the ones before it. Without the password, the facets that carry it are skipped."""
        known = dict(values)
        for facet, template in self.derived.items():
            if set(placeholders(template)) <= known.keys():
                known[facet] = render(template, known)
        return {facet: known[facet] for facet in self.derived if facet in known}


def image_major(image: str) -> int | None:
    """The major version in an image reference's tag (``postgres:18.1`` -> 18), or None without one."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = re.match(r"v?(\d+)", last.split(":", 1)[1])
    return int(match.group(1)) if match else None


ENGINES: Mapping[str, Engine] = MappingProxyType(
    {
        "postgres": Engine(
            name="postgres",
            container_port=5432,
            memory_mib=512,
            data_path="/var/lib/postgresql/data",
            data_path_from_major={18: "/var/lib/postgresql"},
            identity=("user", "database"),
            derived={
                "url": "postgresql://{user}:{password}@{host}:{port}/{database}",
                "jdbc": "jdbc:postgresql://{host}:{port}/{database}",
            },
            environment={"POSTGRES_USER": "{user}", "POSTGRES_PASSWORD": "{password}", "POSTGRES_DB": "{database}"},
            healthcheck=("CMD", "pg_isready", "-h", "127.0.0.1", "-U", "{user}", "-d", "{database}"),
            password_script="password-postgres.sh",
            password_inputs={"ROLE": "{user}", "DATABASE": "{database}"},
        ),
        "redis": Engine(
            name="redis",
            container_port=6379,
            memory_mib=256,
            data_path="/data",
            identity=(),
            derived={"url": "redis://:{password}@{host}:{port}/0"},
            # The server reads requirepass from its config file (the image's entrypoint runs it as the
            # redis user, uid 999); redis-cli reads REDISCLI_AUTH, so neither command line carries the
            # password. maxmemory keeps Redis under the container limit (writes fail instead of the
            # kernel killing it).
            environment={"REDISCLI_AUTH": "{password}"},
            files=(SecretFile("/usr/local/etc/redis/samarth.conf", "requirepass {password}\n", owner="999", group="999"),),
            command=(
                "redis-server", "/usr/local/etc/redis/samarth.conf",
                "--appendonly", "yes", "--maxmemory", "{maxmemory_mib}mb",
            ),
            healthcheck=("CMD-SHELL", "redis-cli -h 127.0.0.1 ping | grep -q PONG"),
            password_script="password-redis.sh",
        ),
        "rabbitmq": Engine(
            name="rabbitmq",
            container_port=5672,
            memory_mib=512,
            data_path="/var/lib/rabbitmq",
            identity=("user", "vhost"),
            derived={"url": "amqp://{user}:{password}@{host}:{port}/{vhost}"},
            environment={
                "RABBITMQ_DEFAULT_USER": "{user}",
                "RABBITMQ_DEFAULT_PASS": "{password}",
                "RABBITMQ_DEFAULT_VHOST": "{vhost}",
                # RabbitMQ sizes its memory alarm from the machine's memory unless told the container's.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-rabbit total_memory_available_override_value {memory_bytes}",
            },
            healthcheck=("CMD", "rabbitmq-diagnostics", "-q", "ping"),
            password_script="password-rabbitmq.sh",
            password_inputs={"USER": "{user}"},
            fixed_hostname=True,
            start_period="60s",
        ),
        "elasticsearch": Engine(
            name="elasticsearch",
            container_port=9200,
            memory_mib=1024,
            data_path="/usr/share/elasticsearch/data",
            identity=(),
            derived={
                "user": "elastic",
                "url": "http://{user}:{password}@{host}:{port}",
                "endpoint": "http://{host}:{port}",
            },
            # Single node, security on (the built-in `elastic` user's password comes from ELASTIC_PASSWORD),
            # plain HTTP on the private network; the JVM heap is half the container's memory.
            environment={
                "discovery.type": "single-node",
                "xpack.security.enabled": "true",
                "xpack.security.http.ssl.enabled": "false",
                "xpack.security.transport.ssl.enabled": "false",
                "ELASTIC_PASSWORD": "{password}",
                "ES_JAVA_OPTS": "-Xms{heap_mib}m -Xmx{heap_mib}m",
            },
            # curl reads the credentials from a config file (the image runs as uid 1000), not from its
            # command line: the healthcheck runs every 15 s and `ps` would show them.
            files=(
                SecretFile("/usr/share/elasticsearch/samarth-healthcheck.curlrc", 'user = "elastic:{password}"\n', owner="1000", group="0"),
            ),
            healthcheck=(
                "CMD", "curl", "-fsS", "-o", "/dev/null", "-K", "/usr/share/elasticsearch/samarth-healthcheck.curlrc",
                "http://127.0.0.1:{container_port}/_cluster/health?wait_for_status=yellow&timeout=5s",
            ),
            password_script="password-search.sh",
            password_inputs={
                "PORT": "{container_port}",
                "USER": "elastic",
                "AUTHENTICATE_PATH": "/_security/_authenticate",
                "RESET": "Set it with the previous password (Vault's previous version of kv/samarth/<service>): "
                "docker exec -it <the container> bin/elasticsearch-reset-password -u elastic -i",
            },
            start_period="120s",
            host_sysctl_minimums={"vm.max_map_count": 262144},
        ),
        # OpenSearch 2.x (opensearch-build docker/release: opensearch-docker-entrypoint-2.x.sh). The
        # security plugin's demo configuration creates the `admin` user from OPENSEARCH_INITIAL_ADMIN_PASSWORD
        # (2.12 and later refuse to start without one, or with one lacking an upper-case letter, a
        # digit and a special character); HTTP stays plain on the private network like Elasticsearch
        # above, so clients need no CA. Lower-case dotted variables become `-E` settings.
        "opensearch": Engine(
            name="opensearch",
            container_port=9200,
            memory_mib=1024,
            data_path="/usr/share/opensearch/data",
            identity=(),
            derived={
                "user": "admin",
                "url": "http://{user}:{password}@{host}:{port}",
                "endpoint": "http://{host}:{port}",
            },
            environment={
                "discovery.type": "single-node",
                "plugins.security.ssl.http.enabled": "false",
                "OPENSEARCH_INITIAL_ADMIN_PASSWORD": "{password}",
                "OPENSEARCH_JAVA_OPTS": "-Xms{heap_mib}m -Xmx{heap_mib}m",
                # The performance analyzer agent is a second JVM outside the heap budget above.
                "DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI": "true",
            },
            # curl reads the credentials from a config file (the image runs as uid 1000, gid 1000), not
            # from its command line: the healthcheck runs every 15 s and `ps` would show them.
            files=(
                SecretFile("/usr/share/opensearch/samarth-healthcheck.curlrc", 'user = "admin:{password}"\n', owner="1000", group="1000"),
            ),
            healthcheck=(
                "CMD", "curl", "-fsS", "-o", "/dev/null", "-K", "/usr/share/opensearch/samarth-healthcheck.curlrc",
                "http://127.0.0.1:{container_port}/_cluster/health?wait_for_status=yellow&timeout=5s",
            ),
            start_period="120s",
            host_sysctl_minimums={"vm.max_map_count": 262144},
            password_specials="-_.",
            password_script="password-search.sh",
            password_inputs={
                "PORT": "{container_port}",
                "USER": "admin",
                "AUTHENTICATE_PATH": "/_plugins/_security/authinfo",
                "RESET": "Set it through the security API with the previous password (Vault's previous version of "
                "kv/samarth/<service>): PUT /_plugins/_security/api/account with current_password and password",
            },
        ),
    }
)


@dataclass(frozen=True)
class Service:
    name: str
    server: str
    engines: tuple[str, ...]
    env: Mapping[str, str]
    host_ports: Mapping[str, int] = field(default_factory=dict)
    memory_mib: Mapping[str, int] = field(default_factory=dict)


CATALOGUE: tuple[Service, ...] = (
    Service(
        "esamwad-backend",
        "db1",
        ("postgres", "redis", "rabbitmq"),
        {
            "SQL_HOST": "{postgres.host}",
            "SQL_PORT": "{postgres.port}",
            "SQL_DATABASE": "{postgres.database}",
            "SQL_USER": "{postgres.user}",
            "SQL_PASSWORD": "{postgres.password}",
            "CELERY_BROKER": "{rabbitmq.url}",
            "REDIS_URL": "{redis.url}",
        },
    ),
    Service(
        "odk-adapter",
        "db2",
        ("postgres", "redis"),
        {
            "DATABASE_URL": "{postgres.url}",
            "QUEUE_HOST": "{redis.host}",
            "QUEUE_PORT": "{redis.port}",
            "QUEUE_PASSWORD": "{redis.password}",
        },
    ),
    Service(
        "doc-generator",
        "db2",
        ("postgres", "rabbitmq"),
        {
            "SQL_HOST": "{postgres.host}",
            "SQL_PORT": "{postgres.port}",
            "SQL_DATABASE": "{postgres.database}",
            "SQL_USER": "{postgres.user}",
            "SQL_PASSWORD": "{postgres.password}",
            "CELERY_BROKER_URL": "{rabbitmq.url}",
        },
    ),
    Service("templater", "db2", ("postgres",), {"DATABASE_URL": "{postgres.url}"}),
    Service(
        "yaus",
        "db2",
        ("postgres", "rabbitmq", "redis"),
        {
            "DATABASE_URL": "{postgres.url}",
            "REDIS_URI": "{redis.url}",
            "RMQ_URL": "{rabbitmq.url}",
            "RMQ_QUEUE": "yaus",
        },
    ),
    Service(
        "odk-aggregate",
        "db2",
        ("postgres",),
        {
            "DB_URL": "{postgres.jdbc}",
            "DB_USERNAME": "{postgres.user}",
            "DB_PASSWORD": "{postgres.password}",
            "DB_NAME": "{postgres.database}",
            "DB_PORT": "{postgres.port}",
            "DB_SCHEMA": "public",
        },
    ),
    Service(
        "fusionauth",
        "db2",
        ("postgres", "opensearch"),
        {
            "DATABASE_URL": "{postgres.jdbc}",
            # The service owns its database; FusionAuth's root and ordinary users are the same role.
            "DATABASE_ROOT_USERNAME": "{postgres.user}",
            "DATABASE_ROOT_PASSWORD": "{postgres.password}",
            "DATABASE_USERNAME": "{postgres.user}",
            "DATABASE_PASSWORD": "{postgres.password}",
            # FusionAuth documents Elasticsearch 7.6.1-7.17.x (7.17 is past Elastic's end of life)
            # and OpenSearch 2.x with FusionAuth 1.42.0 or newer (an older FusionAuth needs Elasticsearch);
            # its search type for both is "elasticsearch".
            "SEARCH_TYPE": "elasticsearch",
            "SEARCH_SERVERS": "{opensearch.url}",
        },
    ),
    Service(
        "airflow",
        "db2",
        ("postgres", "redis"),
        {
            "POSTGRES_HOST": "{postgres.host}",
            "POSTGRES_PORT": "{postgres.port}",
            "POSTGRES_USER": "{postgres.user}",
            "POSTGRES_PASSWORD": "{postgres.password}",
            "POSTGRES_DB": "{postgres.database}",
            "REDIS_HOST": "{redis.host}",
            "REDIS_PORT": "{redis.port}",
            "REDIS_PASSWORD": "{redis.password}",
        },
    ),
)

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def template_problems(template: str, engines: Sequence[str]) -> list[str]:
    """Why ``template`` (a service env value) cannot be rendered for a service with ``engines``."""
    problems = []
    if PLACEHOLDER.sub("", template).count("{") or PLACEHOLDER.sub("", template).count("}"):
        problems.append(f"unbalanced braces in {template!r}")
    for name in placeholders(template):
        engine, _, facet = name.partition(".")
        if engine not in ENGINES or not facet:
            problems.append(f"{{{name}}} is not an {{engine.facet}} placeholder (engines: {', '.join(ENGINES)})")
        elif engine not in engines:
            problems.append(f"{{{name}}} refers to {engine}, which this service does not use (engines: {', '.join(engines)})")
        elif facet not in ENGINES[engine].facets:
            problems.append(f"{{{name}}}: unknown facet {facet!r} of {engine} (facets: {', '.join(ENGINES[engine].facets)})")
    return problems


def render(template: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class Container:
    """One engine of one service on its server, with everything decided from config alone."""

    service: str
    engine: str
    server: str
    host_port: int
    memory_mib: int

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.service}"

    @property
    def spec(self) -> Engine:
        return ENGINES[self.engine]

    def identity(self) -> dict[str, str]:
        """The user, database and vhost this container is created with (named after the service)."""
        names = {"user": self.service.replace("-", "_"), "database": self.service.replace("-", "_"), "vhost": self.service}
        return {key: names[key] for key in self.spec.identity}

    def container_values(self) -> dict[str, str]:
        """Values for the engine's container templates, except the password."""
        return {
            **self.identity(),
            "memory_mib": str(self.memory_mib),
            "memory_bytes": str(self.memory_mib * 1024 * 1024),
            "heap_mib": str(self.memory_mib // 2),
            "maxmemory_mib": str(self.memory_mib * 3 // 4),
            "container_port": str(self.spec.container_port),
        }


def containers(services: Iterable[Service], engine_memory: Mapping[str, int]) -> list[Container]:
    """Every container, in catalogue order, with its host port (see the module docstring) and memory."""
    result: list[Container] = []
    used: dict[tuple[str, str], int] = {}
    for service in services:
        for engine in service.engines:
            index = used.get((service.server, engine), 0)
            used[(service.server, engine)] = index + 1
            port = service.host_ports.get(engine, ENGINES[engine].container_port + index)
            memory = service.memory_mib.get(engine, engine_memory.get(engine, ENGINES[engine].memory_mib))
            result.append(Container(service.name, engine, service.server, port, memory))
    return result
