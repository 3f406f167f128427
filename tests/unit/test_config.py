"""Bad stack config stops the program before any resource is registered, naming the key path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.config import ConfigError
from tests.support.config_checks import refused
from tests.support.program_runs import program_run
from tools.offline import PROJECT, read_stack_values, stack_file


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def _servers_with(**changes: Any) -> dict[str, Any]:
    servers = copy.deepcopy(_prod("servers"))
    for path, value in changes.items():
        server, key = path.split("__")
        server = server.replace("_", "-")
        if value is None:
            servers[server].pop(key)
        else:
            servers[server][key] = value
    return servers


_fails = refused


def test_missing_server() -> None:
    servers = _prod("servers")
    del servers["db2"]
    _fails(["servers: missing db2"], servers=servers)


def test_unknown_server() -> None:
    servers = _prod("servers")
    servers["db3"] = dict(servers["db2"], privateIp="10.20.0.99")
    _fails(["servers.db3", "unknown server 'db3'"], servers=servers)


def test_malformed_ip() -> None:
    _fails(["servers.db1.privateIp", "'10.20.0.300' is not an IPv4 address"], servers=_servers_with(db1__privateIp="10.20.0.300"))


def test_private_ip_outside_private_ranges() -> None:
    _fails(["servers.db1.privateIp", "198.51.100.7 is not a private address"], servers=_servers_with(db1__privateIp="198.51.100.7"))


def test_duplicate_private_ip() -> None:
    _fails(
        ["servers.db2.privateIp: 10.20.0.21 is already the private IP of db1"],
        servers=_servers_with(db2__privateIp="10.20.0.21"),
    )


@pytest.mark.parametrize("port", [0, 65536, -22])
def test_ssh_port_out_of_range(port: int) -> None:
    _fails(["servers.swarm-node2.sshPort"], servers=_servers_with(swarm_node2__sshPort=port))


def test_unknown_key_inside_a_server() -> None:
    servers = _servers_with()
    servers["db1"]["memoryMb"] = 8192
    _fails(["servers.db1.memoryMb: unknown key"], servers=servers)


def test_unknown_top_level_key() -> None:
    _fails(["sever: unknown key"], sever={"db1": {}})


def test_missing_required_key() -> None:
    _fails(["servers.db1.memoryMib: required key is missing"], servers=_servers_with(db1__memoryMib=None))


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("redis:latest", "moving tag 'latest'"),
        ("redis", "has no tag"),
        ("registry.example.org:5000/redis", "has no tag"),
        ("redis@sha256:1234", "malformed digest"),
    ],
)
def test_unpinned_version(image: str, problem: str) -> None:
    versions = dict(_prod("versions"), redis=image)
    _fails(["versions.redis", problem], versions=versions)


def test_unknown_version_key() -> None:
    versions = dict(_prod("versions"), postgress="postgres:16.10")
    _fails(["versions.postgress: unknown key"], versions=versions)


def test_pinned_by_registry_port_and_digest_is_accepted() -> None:
    versions = dict(
        _prod("versions"),
        redis="registry.example.org:5000/redis:7.4.11",
        rabbitmq="rabbitmq@sha256:" + "b" * 64,
        postgres="postgres:16.15@sha256:" + "a" * 64,
    )
    run = program_run("prod", overrides={"versions": versions})
    assert run.error is None, run.error


def test_postgres_needs_its_major_version_in_the_tag() -> None:
    _fails(
        [
            "versions.postgres: 'postgres@sha256:" + "a" * 64 + "' has no version tag; write postgres:<version> "
            "or postgres:<version>@sha256:<digest> (the data path and the upgrade check follow the major version)",
        ],
        versions=dict(_prod("versions"), postgres="postgres@sha256:" + "a" * 64),
    )


def test_an_engine_a_service_uses_must_be_pinned() -> None:
    versions = {k: v for k, v in _prod("versions").items() if k != "opensearch"}
    _fails(["versions.opensearch: required, opensearch is used by fusionauth; pin an image"], versions=versions)


def test_public_access_needs_every_public_address() -> None:
    _fails(["servers.db1.publicAddress: required because access.via is 'public'"], access={"via": "public"})


def test_ssh_key_in_plaintext_is_refused() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    values = dict(values, **{f"{PROJECT}:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"})
    run = program_run("prod", values=values, secrets={})
    assert isinstance(run.error, ConfigError)
    assert "sshPrivateKey: stored in plaintext" in str(run.error)
    assert run.registrations == []


def test_every_error_is_reported_at_once() -> None:
    servers = _servers_with(db1__privateIp="8.8.8.8", db2__sshPort=70000)
    _fails(["servers.db1.privateIp", "servers.db2.sshPort"], servers=servers)


def test_both_stacks_share_one_schema() -> None:
    prod_keys = set(read_stack_values(stack_file("prod"))[0])
    staging_keys = set(read_stack_values(stack_file("staging"))[0])
    assert prod_keys == staging_keys


def test_pulumi_yaml_declares_exactly_the_keys_the_program_reads() -> None:
    import yaml

    from components.config import SECRET_KEYS, TOP_LEVEL_KEYS
    from tools.offline import ROOT, project_declarations

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declarations = project_declarations()
    assert set(declarations) == set(TOP_LEVEL_KEYS) | set(SECRET_KEYS)
    for key, spec in declarations.items():
        assert spec["type"] in {"string", "integer", "boolean", "array", "object"}, key
        assert spec.get("description"), f"{key} has no description"


def test_project_defaults_alone_are_valid_config() -> None:
    """A stack that sets only what has no default runs on Pulumi.yaml's defaults, as under the CLI."""
    from tools.offline import project_declarations

    values, _ = read_stack_values(stack_file("prod"))
    required = {k for k, spec in project_declarations().items() if "default" not in spec}
    minimal = {k: v for k, v in values.items() if k.split(":", 1)[1] in required}
    run = program_run("prod", values=minimal, secrets={})
    assert run.error is None, run.error


def test_a_stack_without_host_keys_is_refused_naming_the_servers_and_the_fix() -> None:
    values, _ = read_stack_values(stack_file("staging"))
    servers = json.loads(values[f"{PROJECT}:servers"])
    access = json.loads(values[f"{PROJECT}:access"])
    for name in ("db1", "swarm-node3"):
        del servers[name]["hostKey"]
    del access["jumpHost"]["hostKey"]
    run = program_run("staging", overrides={"servers": servers, "access": access})
    assert isinstance(run.error, ConfigError), run.error
    message = str(run.error)
    for fragment in (
        "servers.db1.hostKey: required",
        "servers.swarm-node3.hostKey: required",
        "access.jumpHost.hostKey: required",
        "python -m tools.hostkeys --stack staging",
    ):
        assert fragment in message, message
    assert "servers.db2.hostKey" not in message
    assert run.registrations == []


@pytest.mark.parametrize(
    "key, expected",
    [
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "is not an SSH public host key"),
        ("ssh-ed25519 not-base64!", "is not valid base64"),
        # An RSA key's data labelled as ed25519: a copy-paste mix-up.
        ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB", "is not a ssh-ed25519 key"),
        ("SHA256:3VkGa2TbQz0yZ", "is not an SSH public host key"),
    ],
)
def test_a_malformed_host_key_is_refused(key: str, expected: str) -> None:
    _fails(["servers.db1.hostKey", expected], servers=_servers_with(db1__hostKey=key))


def test_a_jump_host_that_is_a_server_cannot_pin_another_key() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    servers = json.loads(values[f"{PROJECT}:servers"])
    jump = {"host": servers["db1"]["privateIp"], "hostKey": servers["db2"]["hostKey"]}
    _fails(
        ["access.jumpHost.hostKey", "10.20.0.21:22 is also where servers.db1 is reached, pinned with another key"],
        access={"via": "private", "jumpHost": jump},
    )


# --- each kind of mistake refused before anything is registered ------------------------------------


def _prod_with(key: str, change: Any) -> dict[str, Any]:
    """The prod value of ``key`` after ``change(value)`` edited it in place."""
    value = copy.deepcopy(_prod(key))
    change(value)
    return value


@pytest.mark.parametrize(
    "tag",
    ["16", "alpine", "mainline", "stable", "lts", "16-alpine", "stable-alpine", "bookworm", "edge", "v2", "1.x", "LATEST"],
)
def test_moving_image_tags_are_refused(tag: str) -> None:
    # Every image field is under the one rule, not just the field tried here.
    for field in ("postgres", "nginx", "vault", "minio"):
        repository = _prod("versions")[field].rsplit(":", 1)[0]
        versions = dict(_prod("versions"), **{field: f"{repository}:{tag}"})
        _fails([f"versions.{field}", f"moving tag {tag!r}"], versions=versions)


@pytest.mark.parametrize("field", ["sentry", "posthog"])
@pytest.mark.parametrize("ref", ["25", "main", "master", "stable", "nightly", "063b964", "release/25.10"])
def test_moving_release_refs_are_refused(field: str, ref: str) -> None:
    _fails([f"versions.{field}", "is not a pinned release"], versions=dict(_prod("versions"), **{field: ref}))


@pytest.mark.parametrize(
    ("field", "ref"),
    [
        ("postgres", "postgres:16.10-bookworm"),
        ("nginx", "nginx:1.28"),
        ("redis", "redis:v7.4.5"),
        ("minio", "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"),
        ("nginx", "nginx:mainline@sha256:" + "b" * 64),
        ("sentry", "25.10.0"),
        ("posthog", "063b9643fe43118384c7479911b08857dcdbd9a5"),
    ],
)
def test_pinned_forms_are_accepted(field: str, ref: str) -> None:
    from components.config import validate_versions

    validate_versions(dict(_prod("versions"), **{field: ref}))


@pytest.mark.parametrize(
    ("key", "change", "path"),
    [
        ("servers", lambda s: s["db1"].update(sshUser="samarth-devops "), "servers.db1.sshUser"),
        ("servers", lambda s: s["db1"].update(hostKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ\n"), "servers.db1.hostKey"),
        ("access", lambda a: a.update(jumpHost={"host": "bastion.example.org", "user": "samarth\n"}), "access.jumpHost.user"),
        # A Cyrillic "а" and the Kelvin sign, which a case-insensitive [a-z] would let through.
        ("edge", lambda e: e["routes"][0].update(host="registry.sаmarth.example.org"), "edge.routes[0].host"),
        ("access", lambda a: a.update(jumpHost={"host": "bastion.example.org", "user": "\u212aelvin"}), "access.jumpHost.user"),
        ("vault", lambda v: v.update(auditFile="audit.log\t"), "vault.auditFile"),
        ("swarm", lambda s: s["labels"]["swarm-node2"].update(zone=" a"), "swarm.labels.swarm-node2.zone"),
        ("servers", lambda s: s.update({"db1 ": s.pop("db1")}), "servers.db1 "),
    ],
)
def test_names_with_whitespace_control_or_non_ascii_characters_are_refused(key: str, change: Any, path: str) -> None:
    _fails([path], **{key: _prod_with(key, change)})


def test_a_domain_with_a_trailing_newline_is_refused() -> None:
    _fails(["domain: 'samarth.example.org\\n' contains the control character"], domain="samarth.example.org\n")


@pytest.mark.parametrize(
    ("key", "change", "path"),
    [
        ("vault", lambda v: v.update(keyShares=True), "vault.keyShares"),
        ("servers", lambda s: s["db1"].update(cpus=True), "servers.db1.cpus"),
        ("servers", lambda s: s["db1"].update(memoryMib="8192"), "servers.db1.memoryMib"),
        ("servers", lambda s: s["db1"].update(sshPort=22.0), "servers.db1.sshPort"),
        ("vault", lambda v: v["jenkins"].update(tokenTtlSeconds=False), "vault.jenkins.tokenTtlSeconds"),
        ("swarm", lambda s: s.update(encryptOverlay="yes"), "swarm.encryptOverlay"),
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(key: str, change: Any, path: str) -> None:
    _fails([f"{path}: Input should be a valid"], **{key: _prod_with(key, change)})


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("vault", lambda v: v.update(port=22), "vault.port: port 22/tcp on application is already used by SSH (servers.application.sshPort)"),
        ("vault", lambda v: v.update(clusterPort=443), "vault.clusterPort: port 443/tcp on application is already used by Nginx (HTTPS)"),
        ("observability", lambda o: o["posthog"].update(port=80), "observability.posthog.port: port 80/tcp on application is already used by Nginx (HTTP)"),
        ("observability", lambda o: o["sentry"].update(port=8200), "observability.sentry.port: port 8200/tcp on application is already used by vault.port"),
        ("databases", lambda d: d["services"].update({"templater": {"hostPorts": {"postgres": 22}}}),
         "databases.services.templater.hostPorts.postgres: port 22/tcp on db2 is already used by SSH (servers.db2.sshPort)"),
        ("servers", lambda s: s["db2"].update(sshPort=6379), "on db2 is already used by SSH (servers.db2.sshPort)"),
        ("servers", lambda s: s["application"].update(sshPort=5000), "servers.application.sshPort: port 5000/tcp on application is already used by the registry"),
        ("edge", lambda e: e["routes"][3].update(port=7946), "edge.routes[3].port: port 7946/tcp on swarm-master is already used by swarm gossip"),
        ("edge", lambda e: e["routes"][3].update(port=22), "edge.routes[3].port: port 22/tcp on swarm-node2 is already used by SSH (servers.swarm-node2.sshPort)"),
    ],
)
def test_a_port_used_twice_on_a_server_is_refused(key: str, change: Any, message: str) -> None:
    _fails([message], **{key: _prod_with(key, change)})


def test_swarm_routes_may_share_a_published_port() -> None:
    edge = _prod_with("edge", lambda e: e["routes"][4].update(port=8000))
    assert program_run("prod", overrides={"edge": edge}).error is None


@pytest.mark.parametrize(
    "allow",
    [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["10.20.0.0/16", "198.51.0.0/16"], ["::/0"], ["2001:db8::/32"]],
)
def test_a_vault_route_open_to_the_internet_is_refused(allow: list[str]) -> None:
    vault_index = next(i for i, r in enumerate(_prod("edge")["routes"]) if r["upstream"] == "vault")
    edge = _prod_with("edge", lambda e: e["routes"][vault_index].update(allow=allow))
    # By the type of every route's allow (components/shared/model.py: ROUTE_ALLOW), Vault's among them.
    _fails([f"edge.routes[{vault_index}].allow", "internet"], edge=edge)


def test_a_vault_route_may_allow_an_office_network() -> None:
    vault_index = next(i for i, r in enumerate(_prod("edge")["routes"]) if r["upstream"] == "vault")
    edge = _prod_with("edge", lambda e: e["routes"][vault_index].update(allow=["10.20.0.0/16", "203.0.113.0/24"]))
    assert program_run("prod", overrides={"edge": edge}).error is None


@pytest.mark.parametrize(
    ("distribution", "image"),
    [("openbao", "hashicorp/vault:1.20.4"), ("vault", "openbao/openbao:2.4.1"), ("vault", "quay.io/openbao/openbao:2.4.1")],
)
def test_a_vault_distribution_that_does_not_match_its_image_is_refused(distribution: str, image: str) -> None:
    _fails(
        ["vault.distribution", f"{distribution!r} does not match versions.vault {image!r}"],
        vault=dict(_prod("vault"), distribution=distribution),
        versions=dict(_prod("versions"), vault=image),
    )


def _declared_credentials(stack: str) -> dict[str, set[str]]:
    from components.assembly import declarations
    from components.config import load_stack_config

    config = load_stack_config(PROJECT, read_stack_values(stack_file(stack))[0])
    keys: dict[str, set[str]] = {}
    for declaration in declarations(config).values():
        for credentials in declaration.credentials:
            keys.setdefault(credentials.kv_path, set()).update(credentials.keys)
    return keys


@pytest.mark.parametrize("platform", ["sentry", "posthog", "registry", "doc-generator"])
def test_a_database_service_cannot_take_over_a_platform_credential(platform: str) -> None:
    """Refused before anything is registered, not when Vault writes the path after every server is done."""
    catalogue_env = {s.name: set(s.env) for s in __import__("components.services.databases.catalogue", fromlist=["CATALOGUE"]).CATALOGUE}
    key = sorted(_declared_credentials("prod")[f"samarth/{platform}"] - catalogue_env.get(platform, set()))[0]
    service: dict[str, Any] = {"env": {key: "{postgres.url}"}}
    if platform != "doc-generator":  # a catalogue service already; the others are added here
        service |= {"server": "db2", "engines": ["postgres"]}
    databases = _prod_with("databases", lambda d: d["services"].update({platform: service}))
    _fails([f"databases.services.{platform}.env.{key}: kv/samarth/{platform} already gets {key}"], databases=databases)


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_what_the_services_declare_for_vault_is_what_the_program_publishes(stack: str, runs: Any) -> None:
    published = {
        r.inputs["name"]: set(json.loads(r.plain_inputs["dataJson"]))
        for r in runs[stack].of_type("vault:kv/secretV2:SecretV2")
    }
    assert published == _declared_credentials(stack)


# --- stack files are read as the CLI reads them --------------------------------------------------


def test_a_key_written_twice_in_a_stack_file_is_refused(tmp_path: Any) -> None:
    from tools.offline import StackFileError

    text = stack_file("prod").read_text().replace(
        "      privateIp: 10.20.0.21\n", "      privateIp: 10.20.0.21\n      privateIp: 10.20.0.29\n", 1
    )
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    line = text.splitlines().index("      privateIp: 10.20.0.29") + 1
    with pytest.raises(StackFileError) as error:
        read_stack_values(path)
    assert f"{path}:{line}:" in str(error.value)
    assert "key 'privateIp' is written twice" in str(error.value)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Any) -> None:
    from tools.offline import StackFileError

    lines = stack_file("prod").read_text().splitlines()
    index = lines.index("    db1:")
    lines[index + 1] = "      privateIp: [10.20.0.21"
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StackFileError) as error:
        read_stack_values(path)
    assert str(error.value).startswith(f"{path}:")
    assert isinstance(error.value, ConfigError)
