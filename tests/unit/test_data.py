"""db1 and db2: the catalogue turned into containers, credentials and per-service environment maps."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from components.config import ConfigError, StackConfig, Versions, load_stack_config
from components.services.databases import component as data
from components.services.databases import settings as databases_settings
from components.services.databases.catalogue import CATALOGUE, ENGINES, placeholders
from components.shared.model import server_name
from components.shared.publishing import CredentialBook
from components.shared.service import APPLICATIONS
from tests.support.program_runs import program_run
from tools.offline import PROJECT, ProgramRun, is_secret, plaintext_strings, read_stack_values, reveal, run_program, stack_file

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
SERVER = "samarth:data:DatabaseServer"


def stack_config(stack: str, overrides: Optional[dict[str, Any]] = None) -> StackConfig:
    values, _ = read_stack_values(stack_file(stack))
    for key, value in (overrides or {}).items():
        values[f"{PROJECT}:{key}"] = json.dumps(value)
    return load_stack_config(PROJECT, values)


@dataclass
class EnvValue:
    value: str
    secret: bool


@dataclass
class DataRun:
    run: ProgramRun
    config: StackConfig
    env: dict[str, dict[str, EnvValue]]

    def containers(self, server: str) -> dict[str, Any]:
        (component,) = [r for r in self.run.of_type(SERVER) if r.name == f"{server}-databases"]
        return {r.inputs["name"]: r for r in self.run.under(component) if r.type == CONTAINER}

    def passwords(self) -> list[str]:
        return [reveal(r.outputs["result"]) for r in self.run.of_type(PASSWORD)]


def data_run(stack: str, overrides: Optional[dict[str, Any]] = None) -> DataRun:
    """Run the program and capture, resolved, what each service's env map holds when it reaches the book."""
    captured: dict[str, dict[str, pulumi.Output[Any]]] = {}
    original = CredentialBook.add

    def add(self: CredentialBook, service: str, values: Any, area: str = APPLICATIONS) -> None:
        captured.setdefault(service, {}).update({k: pulumi.Output.from_input(v) for k, v in values.items()})
        original(self, service, values, area)

    CredentialBook.add = add  # type: ignore[method-assign]
    try:
        # Its own run, not the shared one (tests/support/program_runs.py): the capture changes the program.
        run = run_program(stack, overrides=overrides)
        env = {
            service: {
                key: EnvValue(str(_sync_await(output.future())), _sync_await(output.is_secret()))
                for key, output in values.items()
            }
            for service, values in captured.items()
        }
    finally:
        CredentialBook.add = original  # type: ignore[method-assign]
    if run.error is not None:
        raise AssertionError(f"{stack} failed under mocks: {run.error}")
    return DataRun(run, stack_config(stack, overrides), env)


@pytest.fixture(scope="module")
def prod_data() -> DataRun:
    return data_run("prod")


EXTRA = {
    "memoryMib": {"postgres": 768},
    "services": {
        "reports": {
            "server": "db1",
            "engines": ["postgres", "redis"],
            "env": {"REPORTS_DB": "{postgres.url}", "REPORTS_CACHE": "{redis.url}", "REPORTS_DB_HOST": "{postgres.host}"},
            "memoryMib": {"redis": 128},
        },
        "yaus": {"hostPorts": {"postgres": 15435}, "env": {"RMQ_QUEUE": "yaus-links"}},
    },
}


@pytest.fixture(scope="module")
def extra_data() -> DataRun:
    return data_run("prod", {"databases": EXTRA})


def test_prod_runs_three_containers_on_db1_and_thirteen_on_db2(prod_data: DataRun) -> None:
    assert sorted(prod_data.containers("db1")) == ["postgres-esamwad-backend", "rabbitmq-esamwad-backend", "redis-esamwad-backend"]
    db2 = prod_data.containers("db2")
    assert len(db2) == 13
    assert {"postgres-odk-adapter", "redis-yaus", "rabbitmq-doc-generator", "opensearch-fusionauth", "redis-airflow"} <= set(db2)
    for server in ("db1", "db2"):
        (host,) = [r for r in prod_data.run.of_type("samarth:host:Host") if r.name == server]
        for container in prod_data.containers(server).values():
            provider = prod_data.run.provider_of(container)
        assert provider is not None and prod_data.run.parent_of(provider) == host


def test_every_port_is_published_on_its_servers_private_ip_and_unique(stack_run: ProgramRun) -> None:
    config = stack_config(stack_run.stack)
    containers = [r for r in stack_run.of_type(CONTAINER) if any(a.type == SERVER for a in stack_run.ancestors(r))]
    assert containers
    seen: set[tuple[str, int]] = set()
    for container in containers:
        server = next(a for a in stack_run.ancestors(container) if a.type == SERVER).name.removesuffix("-databases")
        (port,) = container.inputs["ports"]
        assert port["ip"] == config.servers[server_name(server)].private_ip
        assert (server, port["external"]) not in seen
        seen.add((server, port["external"]))
        assert container.delete_before_replace
        assert container.inputs["restart"] == "unless-stopped"
        assert container.inputs["networkMode"] == "bridge"


def test_host_ports_follow_the_documented_scheme(prod_data: DataRun) -> None:
    ports = {name: c.inputs["ports"][0]["external"] for name, c in prod_data.containers("db2").items()}
    assert [ports[f"postgres-{s}"] for s in ("odk-adapter", "doc-generator", "templater", "yaus", "odk-aggregate", "fusionauth", "airflow")] == list(range(5432, 5439))
    assert [ports[f"redis-{s}"] for s in ("odk-adapter", "yaus", "airflow")] == [6379, 6380, 6381]
    assert [ports[f"rabbitmq-{s}"] for s in ("doc-generator", "yaus")] == [5672, 5673]
    assert ports["opensearch-fusionauth"] == 9200
    for name, container in prod_data.containers("db2").items():
        assert container.inputs["ports"][0]["internal"] == ENGINES[name.split("-", 1)[0]].container_port


def test_every_data_volume_is_protected_retained_and_mounted(stack_run: ProgramRun) -> None:
    volumes = {r.inputs["name"]: r for r in stack_run.of_type(VOLUME) if any(a.type == SERVER for a in stack_run.ancestors(r))}
    containers = [r for r in stack_run.of_type(CONTAINER) if any(a.type == SERVER for a in stack_run.ancestors(r))]
    assert len(volumes) == len(containers) == 16
    for volume in volumes.values():
        assert volume.protect and volume.retain_on_delete
    for container in containers:
        (mount,) = container.inputs["volumes"]
        assert mount["volumeName"] == f"{container.inputs['name']}-data"
        image = getattr(stack_config(stack_run.stack).versions, container.inputs["name"].split("-", 1)[0])
        assert mount["containerPath"] == ENGINES[container.inputs["name"].split("-", 1)[0]].mount_path(image)
        assert volumes[mount["volumeName"]].provider == container.provider


def test_every_image_is_pinned_from_versions_and_kept(stack_run: ProgramRun) -> None:
    versions = stack_config(stack_run.stack).versions
    images = {r.urn: r for r in stack_run.of_type(IMAGE) if any(a.type == SERVER for a in stack_run.ancestors(r))}
    assert len(images) == 7  # db1: postgres, redis, rabbitmq; db2: those and opensearch
    by_id = {(img.provider, img.outputs["imageId"]): img for img in images.values()}
    for image in images.values():
        assert image.inputs["keepLocally"] is True
        assert image.inputs["name"] == getattr(versions, image.name.split("-")[1])
    for container in stack_run.of_type(CONTAINER):
        if any(a.type == SERVER for a in stack_run.ancestors(container)):
            image = by_id[(container.provider, container.inputs["image"])]
            assert image.inputs["name"] == getattr(versions, container.inputs["name"].split("-", 1)[0])


def test_memory_limits_are_the_capacity_placements(stack_run: ProgramRun) -> None:
    placements = databases_settings.declare(stack_config(stack_run.stack), ()).placements
    containers = {r.inputs["name"]: r for r in stack_run.of_type(CONTAINER)}
    assert len(placements) == 16
    for placement in placements:
        container = containers[placement.what]
        assert container.inputs["memory"] == placement.memory_mib == container.inputs["memorySwap"]
    # prod sets postgres to 1024 MiB, staging keeps Redis small: the stack files are what counts.
    if stack_run.stack == "prod":
        assert containers["postgres-airflow"].inputs["memory"] == 1024


def test_no_generated_password_appears_in_plaintext_anywhere(stack_run: ProgramRun) -> None:
    passwords = [
        reveal(r.outputs["result"])
        for r in stack_run.of_type(PASSWORD)
        if any(a.type == SERVER for a in stack_run.ancestors(r))
    ]
    assert len(passwords) == 16 and all(passwords)
    for registration in stack_run.registrations:
        for text in plaintext_strings(registration.inputs):
            assert not any(p in text for p in passwords), f"{registration.type} {registration.name}: {text}"
    exported = json.dumps(stack_run.exports)
    assert not any(p in exported for p in passwords)


def test_credentials_reach_each_container_only_as_secrets(prod_data: DataRun) -> None:
    db1 = prod_data.containers("db1")
    postgres = db1["postgres-esamwad-backend"]
    assert is_secret(postgres.inputs["envs"])
    envs = dict(e.split("=", 1) for e in reveal(postgres.inputs["envs"]))
    env = prod_data.env["esamwad-backend"]
    assert envs == {"POSTGRES_USER": env["SQL_USER"].value, "POSTGRES_PASSWORD": env["SQL_PASSWORD"].value, "POSTGRES_DB": env["SQL_DATABASE"].value}
    assert postgres.inputs["healthcheck"]["tests"] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "esamwad_backend", "-d", "esamwad_backend"]

    redis = db1["redis-esamwad-backend"]
    redis_password = urlsplit(env["REDIS_URL"].value).password
    assert redis_password
    assert reveal(redis.inputs["envs"]) == [f"REDISCLI_AUTH={redis_password}"] and is_secret(redis.inputs["envs"])
    command = " ".join(redis.inputs["command"])
    assert command.startswith("redis-server /usr/local/etc/redis/samarth.conf ") and "--appendonly yes" in command
    assert "--maxmemory 192mb" in command  # three quarters of 256 MiB
    # requirepass from a file only the redis user (uid 999 in the image) reads, never in argv.
    assert is_secret(redis.inputs["uploads"])
    (conf,) = reveal(redis.inputs["uploads"])
    assert conf["file"] == "/usr/local/etc/redis/samarth.conf"
    assert conf["content"] == f"requirepass {redis_password}\n"
    assert (conf["owner"], conf["group"], conf["permissions"]) == ("999", "999", "0400")
    assert redis_password not in command
    assert "redis-cli" in redis.inputs["healthcheck"]["tests"][1] and redis.inputs["healthcheck"]["tests"][0] == "CMD-SHELL"

    rabbit = db1["rabbitmq-esamwad-backend"]
    broker = urlsplit(env["CELERY_BROKER"].value)
    assert rabbit.inputs["hostname"] == "rabbitmq-esamwad-backend"
    assert dict(e.split("=", 1) for e in reveal(rabbit.inputs["envs"])) == {
        "RABBITMQ_DEFAULT_USER": broker.username,
        "RABBITMQ_DEFAULT_PASS": broker.password,
        "RABBITMQ_DEFAULT_VHOST": broker.path.lstrip("/"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-rabbit total_memory_available_override_value {512 * 1024 * 1024}",
    }
    assert rabbit.inputs["healthcheck"]["tests"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]


def test_opensearch_is_single_node_secured_sized_and_waits_for_the_kernel_check(prod_data: DataRun) -> None:
    search_engine = prod_data.containers("db2")["opensearch-fusionauth"]
    envs = dict(e.split("=", 1) for e in reveal(search_engine.inputs["envs"]))
    search = urlsplit(prod_data.env["fusionauth"]["SEARCH_SERVERS"].value)
    assert envs["discovery.type"] == "single-node"
    assert envs["plugins.security.ssl.http.enabled"] == "false"
    assert envs["OPENSEARCH_INITIAL_ADMIN_PASSWORD"] == search.password and search.username == "admin"
    # The security plugin's demo installer refuses a password without upper, lower, digit and special;
    # the specials are URL-unreserved, so SEARCH_SERVERS needs no escaping.
    generated = prod_data.run.named("random:index/randomPassword:RandomPassword", "db2-opensearch-fusionauth-password")
    assert {k: generated.inputs[k] for k in ("special", "overrideSpecial", "minSpecial", "minUpper", "minLower", "minNumeric")} == {
        "special": True, "overrideSpecial": "-_.", "minSpecial": 1, "minUpper": 1, "minLower": 1, "minNumeric": 1
    }
    postgres = prod_data.run.named("random:index/randomPassword:RandomPassword", "db2-postgres-fusionauth-password")
    assert postgres.inputs["special"] is False
    assert envs["OPENSEARCH_JAVA_OPTS"] == "-Xms1024m -Xmx1024m"  # half of prod's 2048 MiB
    check = search_engine.inputs["healthcheck"]["tests"]
    # curl reads the credentials from a file only the opensearch user (uid 1000) reads, not from argv.
    assert is_secret(search_engine.inputs["uploads"])
    (curlrc,) = reveal(search_engine.inputs["uploads"])
    assert check[:2] == ["CMD", "curl"] and check[check.index("-K") + 1] == curlrc["file"]
    assert "_cluster/health" in check[-1] and not any("PASSWORD" in part for part in check)
    assert curlrc["content"] == f'user = "admin:{search.password}"\n'
    assert (curlrc["owner"], curlrc["group"], curlrc["permissions"]) == ("1000", "1000", "0400")
    assert search_engine.inputs["volumes"][0]["containerPath"] == "/usr/share/opensearch/data"
    sysctls = prod_data.run.named("command:remote:Command", "db2-database-sysctls")
    assert sysctls.urn in search_engine.dependencies
    assert "vm.max_map_count" in sysctls.inputs["create"]
    assert not [r for r in prod_data.run.of_type("command:remote:Command") if r.name == "db1-database-sysctls"]


@pytest.mark.parametrize("value, ok", [("262144", True), ("1048576", True), ("65530", False)])
def test_the_kernel_check_script_passes_or_says_how_to_fix(tmp_path: Path, value: str, ok: bool) -> None:
    fake = tmp_path / "sysctl"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-n" ] && [ "$2" = "vm.max_map_count" ] && echo {value}\n')
    fake.chmod(0o755)
    body = data.sysctl_check_script("db2", {"vm.max_map_count": 262144})
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for _ in range(2):  # read-only: the same outcome every time
        result = subprocess.run(["sh", "-c", body], capture_output=True, text=True, env=env)
        assert (result.returncode == 0) is ok, result.stderr
        if not ok:
            assert f"vm.max_map_count is {value} on db2, at least 262144 is needed" in result.stderr
            assert "sudo sysctl -w vm.max_map_count=262144" in result.stderr


def _check_url(url: str, scheme: str, host: str, port: int, user: Optional[str], path: str) -> None:
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.username, parts.path) == (scheme, host, port, user, path), url


def test_each_service_gets_its_connection_values_in_its_own_names(prod_data: DataRun) -> None:
    config = prod_data.config
    db1, db2 = config.servers["db1"].private_ip, config.servers["db2"].private_ip
    env = prod_data.env
    # Other components (Sentry, PostHog, ...) add their own services to the same book.
    assert {s.name for s in CATALOGUE} <= set(env)

    _check_url(env["odk-adapter"]["DATABASE_URL"].value, "postgresql", db2, 5432, "odk_adapter", "/odk_adapter")
    assert (env["odk-adapter"]["QUEUE_HOST"].value, env["odk-adapter"]["QUEUE_PORT"].value) == (db2, "6379")
    _check_url(env["templater"]["DATABASE_URL"].value, "postgresql", db2, 5434, "templater", "/templater")
    _check_url(env["yaus"]["DATABASE_URL"].value, "postgresql", db2, 5435, "yaus", "/yaus")
    _check_url(env["yaus"]["REDIS_URI"].value, "redis", db2, 6380, "", "/0")
    _check_url(env["yaus"]["RMQ_URL"].value, "amqp", db2, 5673, "yaus", "/yaus")
    _check_url(env["doc-generator"]["CELERY_BROKER_URL"].value, "amqp", db2, 5672, "doc_generator", "/doc-generator")
    doc = {k: v.value for k, v in env["doc-generator"].items() if k.startswith("SQL_")}
    assert {k: doc[k] for k in ("SQL_HOST", "SQL_PORT", "SQL_DATABASE", "SQL_USER")} == {
        "SQL_HOST": db2, "SQL_PORT": "5433", "SQL_DATABASE": "doc_generator", "SQL_USER": "doc_generator"
    }
    _check_url(env["esamwad-backend"]["CELERY_BROKER"].value, "amqp", db1, 5672, "esamwad_backend", "/esamwad-backend")
    _check_url(env["esamwad-backend"]["REDIS_URL"].value, "redis", db1, 6379, "", "/0")

    aggregate = env["odk-aggregate"]
    assert aggregate["DB_URL"].value.startswith("jdbc:")
    _check_url(aggregate["DB_URL"].value.removeprefix("jdbc:"), "postgresql", db2, 5436, None, "/odk_aggregate")
    assert (aggregate["DB_USERNAME"].value, aggregate["DB_NAME"].value, aggregate["DB_PORT"].value) == ("odk_aggregate", "odk_aggregate", "5436")
    fusionauth = env["fusionauth"]
    _check_url(fusionauth["DATABASE_URL"].value.removeprefix("jdbc:"), "postgresql", db2, 5437, None, "/fusionauth")
    assert fusionauth["SEARCH_TYPE"].value == "elasticsearch"
    _check_url(fusionauth["SEARCH_SERVERS"].value, "http", db2, 9200, "admin", "")
    airflow = {k: v.value for k, v in env["airflow"].items()}
    assert (airflow["POSTGRES_HOST"], airflow["POSTGRES_PORT"], airflow["POSTGRES_DB"], airflow["REDIS_PORT"]) == (db2, "5438", "airflow", "6381")

    # One password per service and engine, the same one the URL and the separate fields carry.
    assert urlsplit(env["yaus"]["DATABASE_URL"].value).password != urlsplit(env["templater"]["DATABASE_URL"].value).password
    assert fusionauth["DATABASE_PASSWORD"].value == fusionauth["DATABASE_ROOT_PASSWORD"].value
    passwords = set(prod_data.passwords())
    assert urlsplit(env["odk-adapter"]["DATABASE_URL"].value).password in passwords


def test_values_with_credentials_are_secret_and_the_rest_plain(prod_data: DataRun) -> None:
    passwords = prod_data.passwords()
    for service, values in prod_data.env.items():
        for key, item in values.items():
            carries = any(p in item.value for p in passwords)
            assert item.secret == carries, f"{service} {key}"
    assert not prod_data.env["odk-aggregate"]["DB_URL"].secret  # a JDBC URL without credentials stays readable


def test_export_lists_endpoints_without_credentials(prod_data: DataRun) -> None:
    exported = prod_data.run.exports["databases"]
    assert exported["fusionauth"]["opensearch"] == {"container": "opensearch-fusionauth", "host": prod_data.config.servers["db2"].private_ip, "port": 9200}
    assert sorted(exported) == sorted(s.name for s in CATALOGUE)


def test_a_service_added_in_stack_config_gets_containers_and_env(extra_data: DataRun) -> None:
    db1 = extra_data.containers("db1")
    assert len(db1) == 5
    assert db1["postgres-reports"].inputs["ports"][0]["external"] == 5433
    assert db1["redis-reports"].inputs["ports"][0]["external"] == 6380
    assert db1["postgres-reports"].inputs["memory"] == 768 and db1["redis-reports"].inputs["memory"] == 128
    ip = extra_data.config.servers["db1"].private_ip
    reports = extra_data.env["reports"]
    _check_url(reports["REPORTS_DB"].value, "postgresql", ip, 5433, "reports", "/reports")
    _check_url(reports["REPORTS_CACHE"].value, "redis", ip, 6380, "", "/0")
    assert reports["REPORTS_DB_HOST"] == EnvValue(ip, False) and reports["REPORTS_DB"].secret
    assert "reports" in extra_data.run.exports["databases"]
    # The override of a catalogue service changes only what it names.
    assert extra_data.containers("db2")["postgres-yaus"].inputs["ports"][0]["external"] == 15435
    assert extra_data.env["yaus"]["RMQ_QUEUE"].value == "yaus-links"
    _check_url(extra_data.env["yaus"]["DATABASE_URL"].value, "postgresql", extra_data.config.servers["db2"].private_ip, 15435, "yaus", "/yaus")


BAD = {
    "unknown engine": (
        {"services": {"reports": {"server": "db1", "engines": ["postgres", "mysql"], "env": {}}}},
        "databases.services.reports.engines[1]: unknown engine 'mysql'",
    ),
    "not a database server": (
        {"services": {"reports": {"server": "application", "engines": ["postgres"], "env": {}}}},
        "databases.services.reports.server: 'application' is not a database server",
    ),
    "host port clash": (
        {"services": {"reports": {"server": "db2", "engines": ["redis"], "env": {}, "hostPorts": {"redis": 6380}}}},
        "databases.services.reports.hostPorts.redis: host port 6380 on db2 is taken by both redis-yaus and redis-reports",
    ),
    "unknown facet": (
        {"services": {"reports": {"server": "db2", "engines": ["postgres"], "env": {"DB": "{postgres.dsn}"}}}},
        "databases.services.reports.env.DB: {postgres.dsn}: unknown facet 'dsn' of postgres",
    ),
    "engine the service lacks": (
        {"services": {"templater": {"env": {"CACHE": "{redis.url}"}}}},
        "databases.services.templater.env.CACHE: {redis.url} refers to redis, which this service does not use",
    ),
    "new service without server": (
        {"services": {"reports": {"engines": ["postgres"]}}},
        "databases.services.reports.server: required for a service not in the catalogue",
    ),
    "unknown engine size": ({"memoryMib": {"mongo": 512}}, "databases.memoryMib.mongo: unknown engine 'mongo'"),
    "typo": ({"memoryMb": {}}, "databases.memoryMb: unknown key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_databases_config_fails_before_any_registration(case: str) -> None:
    databases, message = BAD[case]
    run = program_run("prod", overrides={"databases": databases})
    assert isinstance(run.error, ConfigError)
    assert message in str(run.error)
    assert run.registrations == []


def test_databases_that_do_not_fit_fail_the_capacity_check() -> None:
    run = program_run("staging", overrides={"databases": {"memoryMib": {"postgres": 4096}}})
    assert isinstance(run.error, ConfigError)
    assert "servers.db2.memoryMib" in str(run.error) and "postgres-airflow (4096 MiB)" in str(run.error)
    assert run.registrations == []


def test_the_catalogue_is_consistent() -> None:
    assert set(ENGINES) <= set(Versions.model_fields)  # each engine's image is pinned in `versions`
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    for engine in ENGINES.values():
        # The password only ever reaches a container through its (secret) environment.
        for template in (*engine.command, *engine.healthcheck):
            assert "password" not in placeholders(template)
    sample = stack_config("prod").databases.containers()
    for container in sample:
        known = {*container.container_values(), "password"}
        for template in (*container.spec.command, *container.spec.healthcheck, *container.spec.environment.values()):
            assert set(placeholders(template)) <= known, template


def test_resource_names_are_unique_per_type(prod_data: DataRun) -> None:
    keys = [(r.type, r.name) for r in prod_data.run.registrations]
    assert len(keys) == len(set(keys))
