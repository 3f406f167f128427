"""The policy pack's rules, one validator at a time: each with resources that break it and that keep it.

Resources are built the way the pack's analyzer presents them (unknown-checking proxies, secrets as
``pulumi_policy.Secret``), from the wire form the engine sends (secrets as signature dicts).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from pulumi_policy import EnforcementLevel, PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy import deserialize as sdk_deserialize
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.shared.model import pinned_tag as _pinned_tag
from policies import rules
from tools.offline import SECRET_SIG, SECRET_SIG_KEY

DIGEST = "sha256:" + "ab" * 32
HEALTHY = {"tests": ["CMD", "pg_isready"], "interval": "10s"}


def secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG_KEY: SECRET_SIG, "value": value}


def resource(type_: str, props: dict[str, Any], name: str = "res", protect: bool = False) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    presented = unknown_checking_proxy({k: rules._marked(v) for k, v in props.items()})
    return ResourceValidationArgs(type_, presented, f"urn:pulumi:test::p::{type_}::{name}", name, opts, None)


def violations(validator: rules.Validator, args: ResourceValidationArgs) -> list[str]:
    found: list[str] = []

    def report(message: str, urn: Optional[str] = None) -> None:
        found.append(message)

    validator(args, report)
    return found


def container(**props: Any) -> dict[str, Any]:
    base = {
        "name": "postgres-esamwad-be",
        "image": "postgres:16.10",
        "restart": "unless-stopped",
        "healthcheck": HEALTHY,
        "memory": 1024,
        "networkMode": "bridge",
        "ports": [{"internal": 5432, "external": 5432, "ip": "10.20.0.21", "protocol": "tcp"}],
        "envs": [secret("POSTGRES_PASSWORD=pw123"), "POSTGRES_USER=esamwad"],
    }
    base.update(props)
    return base


def service(**task: Any) -> dict[str, Any]:
    spec = {
        "containerSpec": {"image": "ghcr.io/samagra/yaus:1.4.2", "healthcheck": {"tests": ["CMD", "true"]}},
        "resources": {"limits": {"memoryBytes": 536870912}},
        "restartPolicy": {"condition": "any"},
    }
    spec.update(task)
    return {"name": "samarth_yaus", "taskSpec": spec, "endpointSpec": {"ports": [{"targetPort": 3333, "publishedPort": 3333}]}}


# --- the registry --------------------------------------------------------------------------------

def test_every_rule_is_a_mandatory_policy() -> None:
    assert [p.name for p in rules.POLICIES] == list(rules.RULES)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in rules.POLICIES)
    assert len(rules.POLICIES) == 8


PIN_CORPUS = (
    "16.10", "7.4.5", "v1.2.3", "1.28.0-alpine", "16.10-bookworm", "2.8.3+build.1", "RELEASE.2025-09-07T16-13-09Z",
    "2024-01-31", "latest", "16", "16-alpine", "alpine", "mainline", "stable", "stable-alpine", "lts", "edge",
    "nightly", "main", "1.x", "v2", "063b9643fe43118384c7479911b08857dcdbd9a5", "release-1.40.0", "release-1", "stable-alpine3.20",
)


def _image_refs(value: Any) -> list[str]:
    """Every image reference in a ``versions`` document (nested maps included), by its shape."""
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _image_refs(item)]
    return [value] if isinstance(value, str) and ":" in value and not value.replace(".", "").isdigit() else []


def test_images_follow_the_tag_rule_config_applies() -> None:
    import json

    from tools.offline import read_stack_values, stack_file

    stack_tags = [
        ref.partition("@")[0].rsplit(":", 1)[1]
        for stack in ("prod", "staging")
        for text in [read_stack_values(stack_file(stack))[0]]
        for key, value in text.items()
        if key.endswith((":versions",))
        for ref in _image_refs(json.loads(value))
        if ":" in ref.partition("@")[0].rsplit("/", 1)[-1]
    ]
    assert len(stack_tags) >= 10
    for tag in (*PIN_CORPUS, *stack_tags):
        assert rules.tag_is_pinned(tag) == _pinned_tag(tag, commit_allowed=False), tag


def test_stock_sdk_unwraps_secrets_which_is_why_the_pack_keeps_markers() -> None:
    wire = {"env": secret("X_PASSWORD=1")}
    assert sdk_deserialize.deserialize_properties(wire)["env"] == "X_PASSWORD=1"
    assert isinstance(rules._marked(wire["env"]), rules.Secret)


# --- no container port on a public or wildcard address -------------------------------------------

@pytest.mark.parametrize("ip", ["0.0.0.0", "", None, "::", "[::]", "203.0.113.10", "8.8.8.8", UNKNOWN_STRING_VALUE])
def test_port_on_public_or_wildcard_address_fails(ip: Any) -> None:
    port = {"internal": 3000, "external": 3000} | ({} if ip is None else {"ip": ip})
    found = violations(rules.no_public_container_ports, resource(rules.CONTAINER, container(ports=[port])))
    assert len(found) == 1 and "ports[0]" in found[0]


@pytest.mark.parametrize("ip", ["10.20.0.21", "127.0.0.1", "172.16.4.2", "192.168.1.9", "100.64.0.3", "::1"])
def test_port_on_private_or_loopback_address_passes(ip: str) -> None:
    port = {"internal": 3000, "external": 3000, "ip": ip}
    assert violations(rules.no_public_container_ports, resource(rules.CONTAINER, container(ports=[port]))) == []


def test_nginx_may_publish_80_and_443_publicly_but_nothing_else() -> None:
    ports = [{"internal": 80, "external": 80, "ip": "0.0.0.0"}, {"internal": 443, "external": 443}]
    by_name = container(name="nginx", image="sha256:" + "1" * 64, ports=ports)
    by_image = container(name="edge-proxy", image="nginx:1.27.3", ports=ports)
    by_image_id = container(name="edge", image="sha256:" + "2" * 64 + "nginx:1.27.3", ports=ports)
    for props in (by_name, by_image, by_image_id):
        assert violations(rules.no_public_container_ports, resource(rules.CONTAINER, props)) == []
    status = container(name="nginx", image="nginx:1.27.3", ports=[{"internal": 8080, "external": 8080, "ip": "0.0.0.0"}])
    assert len(violations(rules.no_public_container_ports, resource(rules.CONTAINER, status))) == 1
    impostor = container(name="app", image="ghcr.io/samagra/app:1.0", ports=ports)
    assert len(violations(rules.no_public_container_ports, resource(rules.CONTAINER, impostor))) == 2


def test_publish_all_ports_fails() -> None:
    found = violations(rules.no_public_container_ports, resource(rules.CONTAINER, container(publishAllPorts=True)))
    assert len(found) == 1 and "publishAllPorts" in found[0]


# --- every image pinned --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container(image="postgres")),
        (rules.CONTAINER, container(image="postgres:latest")),
        (rules.REMOTE_IMAGE, {"name": "redis:stable", "keepLocally": True}),
        (rules.REMOTE_IMAGE, {"name": "registry.example.org:5000/samarth/yaus", "keepLocally": True}),
        (rules.REMOTE_IMAGE, {"name": "minio/minio@sha256:abc", "keepLocally": True}),
        (rules.SERVICE, service(containerSpec={"image": "ghcr.io/samagra/yaus:LATEST"})),
    ],
)
def test_unpinned_image_fails(type_: str, props: dict[str, Any]) -> None:
    assert len(violations(rules.images_pinned, resource(type_, props))) == 1


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container(image="postgres:16.10")),
        (rules.CONTAINER, container(image=DIGEST)),  # RemoteImage.imageId
        (rules.CONTAINER, container(image=UNKNOWN_STRING_VALUE)),  # not known at preview; its RemoteImage is checked
        (rules.CONTAINER, {k: v for k, v in container().items() if k != "image"}),  # mocks without an imageId fake
        (rules.REMOTE_IMAGE, {"name": "registry.example.org:5000/samarth/yaus:2.1.0"}),
        (rules.REMOTE_IMAGE, {"name": f"quay.io/minio/minio@{DIGEST}"}),
        (rules.SERVICE, service()),
    ],
)
def test_pinned_image_passes(type_: str, props: dict[str, Any]) -> None:
    assert violations(rules.images_pinned, resource(type_, props)) == []


# --- every Docker volume protected ---------------------------------------------------------------

def test_unprotected_volume_fails() -> None:
    found = violations(rules.volumes_protected, resource(rules.VOLUME, {"name": "pgdata"}, "db1-pgdata"))
    assert len(found) == 1 and "protect=True" in found[0]


def test_protected_volume_passes() -> None:
    assert violations(rules.volumes_protected, resource(rules.VOLUME, {"name": "pgdata"}, protect=True)) == []


# --- restart policy, healthcheck, memory limit ---------------------------------------------------

@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (container(restart="no"), "restart"),
        (container(restart=None), "restart"),
        (container(healthcheck=None), "no healthcheck"),
        (container(healthcheck={"tests": ["NONE"]}), "NONE"),
        (container(memory=None), "memory limit"),
        (container(memory=0), "memory limit"),
    ],
)
def test_unsupervised_container_fails(props: dict[str, Any], expected: str) -> None:
    found = violations(rules.containers_supervised, resource(rules.CONTAINER, props))
    assert len(found) == 1 and expected in found[0]


def test_supervised_container_passes() -> None:
    assert violations(rules.containers_supervised, resource(rules.CONTAINER, container())) == []


def test_unsupervised_service_fails() -> None:
    props = service(restartPolicy={"condition": "none"}, resources={}, containerSpec={"image": "x:1"})
    found = violations(rules.containers_supervised, resource(rules.SERVICE, props))
    assert len(found) == 3


def test_supervised_service_passes() -> None:
    assert violations(rules.containers_supervised, resource(rules.SERVICE, service())) == []


# --- no credential in plaintext ------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    ["SQL_PASSWORD", "POSTGRES_PASSWORD", "minioPassword", "token", "VAULT_TOKEN", "API_KEY", "SECRET_KEY",
     "privateKey", "secretId", "MINIO_ROOT_PASSWORD", "REDIS_PASSWORD", "KEY", "PGPASSWORD", "RABBITMQ_DEFAULT_PASS",
     "REDISCLI_AUTH"],
)
def test_credential_names(name: str) -> None:
    assert rules.credential_name(name)


@pytest.mark.parametrize(
    "name", ["POSTGRES_PASSWORD_FILE", "tokenPolicies", "hostKey", "SQL_USER", "QUEUE_HOST", "DB_URL", "create", "secretName"]
)
def test_not_credential_names(name: str) -> None:
    assert not rules.credential_name(name)


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container(envs=["POSTGRES_PASSWORD=pw123"])),
        (rules.CONTAINER, container(envs=["DATABASE_URL=postgres://odk:pw123@10.20.0.22:5432/odk"])),
        (rules.CONTAINER, container(envs=["DB_URL=jdbc:postgresql://10.20.0.22/aggregate?user=a&password=pw123"])),
        (rules.COMMAND, {"create": "vault kv put kv/x a=b", "environment": {"VAULT_TOKEN": "hvs.abc"}}),
        (rules.COMMAND, {"create": "PGPASSWORD=pw123 psql -h 10.20.0.21 -c 'select 1'"}),
        (rules.COMMAND, {"create": "export MINIO_ROOT_PASSWORD='pw123'\nmc alias set local http://x minio $MINIO_ROOT_PASSWORD"}),
        (rules.COMMAND, {"create": "sh -s", "stdin": "mc alias set s3 http://admin:pw123@127.0.0.1:9000"}),
        (rules.COMMAND, {"create": "true", "connection": {"host": "10.20.0.10", "privateKey": "-----BEGIN KEY-----"}}),
        (rules.COMMAND, {"create": "true", "environment": {"REDIS_PASSWORD": UNKNOWN_STRING_VALUE}}),
        ("minio:index/provider:Provider", {"minioServer": "10.20.0.10:9000", "minioPassword": "pw123"}),
        ("vault:kv/secretV2:SecretV2", {"mount": "kv", "name": "samarth/yaus", "dataJson": '{"RMQ_PASSWORD": "pw123"}'}),
    ],
)
def test_plaintext_credential_fails(type_: str, props: dict[str, Any]) -> None:
    assert len(violations(rules.credentials_are_secrets, resource(type_, props))) >= 1


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container()),
        (rules.CONTAINER, container(envs=[secret("DATABASE_URL=postgres://odk:pw123@10.20.0.22:5432/odk")])),
        (rules.CONTAINER, container(envs=secret(["POSTGRES_PASSWORD=pw123"]))),
        (rules.CONTAINER, container(envs=["POSTGRES_PASSWORD_FILE=/run/secrets/pg", "SENTRY_DSN=https://abc@sentry.example.org/2"])),
        (rules.COMMAND, {"create": "vault kv put kv/x a=b", "environment": {"VAULT_TOKEN": secret("hvs.abc")}}),
        (rules.COMMAND, {"create": 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 10.20.0.21', "environment": {"POSTGRES_PASSWORD": secret("x")}}),
        (rules.COMMAND, {"create": "sh -s", "stdin": secret("mc alias set s3 http://admin:pw123@127.0.0.1:9000")}),
        (rules.COMMAND, {"create": "true", "connection": secret({"host": "10.20.0.10", "privateKey": "-----BEGIN KEY-----"})}),
        (rules.COMMAND, {"create": "true", "connection": {"host": "10.20.0.10", "hostKey": "ssh-ed25519 AAAA"}}),
        (rules.COMMAND, {"create": "true", "environment": {"REDIS_PASSWORD": secret(UNKNOWN_STRING_VALUE)}}),
        (rules.COMMAND, {"create": "keys=$(cat)\nfor key in $keys; do printf '%s' \"$key\" | vault write sys/unseal key=-; done", "stdin": secret("k1\n")}),
        ("vault:kv/secretV2:SecretV2", {"mount": "kv", "name": "samarth/yaus", "dataJson": secret('{"RMQ_PASSWORD": "x"}')}),
    ],
)
def test_secret_credential_passes(type_: str, props: dict[str, Any]) -> None:
    assert violations(rules.credentials_are_secrets, resource(type_, props)) == []


# --- MinIO anonymous access read-only ------------------------------------------------------------

def bucket_policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"bucket": "doc-generator", "policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


READ_ONLY = (
    {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::doc-generator"]},
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::doc-generator/*"},
)


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::doc-generator"]},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::doc-generator/*"},
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::doc-generator/*"},
        {"Effect": "Allow", "Principal": "*", "NotAction": "s3:DeleteObject", "Resource": "arn:aws:s3:::doc-generator/*"},
    ],
)
def test_anonymous_access_beyond_read_fails(statement: dict[str, Any]) -> None:
    args = resource(rules.BUCKET_POLICY, bucket_policy(*READ_ONLY, statement))
    assert len(violations(rules.minio_anonymous_read_only, args)) == 1


def test_anonymous_read_and_user_write_pass() -> None:
    user = {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/doc-generator"]}, "Action": "s3:*", "Resource": "*"}
    args = resource(rules.BUCKET_POLICY, bucket_policy(*READ_ONLY, user))
    assert violations(rules.minio_anonymous_read_only, args) == []


@pytest.mark.parametrize("acl", ["public-read", "public-read-write", "public"])
def test_bucket_acl_other_than_private_fails(acl: str) -> None:
    args = resource(rules.BUCKET, {"bucket": "doc-generator", "acl": acl})
    assert len(violations(rules.minio_anonymous_read_only, args)) == 1


@pytest.mark.parametrize("props", [{"bucket": "doc-generator", "acl": "private"}, {"bucket": "doc-generator"}])
def test_private_bucket_passes(props: dict[str, Any]) -> None:
    assert violations(rules.minio_anonymous_read_only, resource(rules.BUCKET, props)) == []


# --- Vault, MinIO console, registry, database ports never public ---------------------------------

VAULT_HCL = """ui = true
api_addr = "http://10.20.0.10:8200"
listener "tcp" {
  address         = "10.20.0.10:8200"
  cluster_address = "10.20.0.10:8201"
}
listener "tcp" {
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
}
"""


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container(name="vault", image="hashicorp/vault:1.18.3", ports=[{"internal": 8200, "external": 8200, "ip": "0.0.0.0"}])),
        (rules.CONTAINER, container(name="minio", image="quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z", ports=[{"internal": 9090, "external": 9090}])),
        (rules.CONTAINER, container(name="nginx", image="nginx:1.27.3", ports=[{"internal": 5000, "external": 5000, "ip": "203.0.113.10"}])),
        (rules.CONTAINER, container(ports=[{"internal": 5432, "external": 15432, "ip": "::"}])),
        (rules.CONTAINER, container(networkMode="host", ports=[])),
        (rules.CONTAINER, container(name="vault", image="hashicorp/vault:1.18.3", networkMode="host", ports=[],
                                    uploads=[{"file": "/vault/config/vault.hcl", "content": VAULT_HCL.replace("10.20.0.10", "0.0.0.0")}])),
        (rules.CONTAINER, container(name="vault", image="hashicorp/vault:1.18.3", networkMode="host", ports=[],
                                    uploads=[{"file": "/vault/config/vault.hcl", "content": 'listener "tcp" {\n  address = ":8200"\n}\n'}])),
        (rules.CONTAINER, container(image="sha256:" + "3" * 64 + "redis:7.4.5", ports=[{"internal": 6380, "external": 6380}])),
        (rules.CONTAINER, container(name="redis-yaus", image="sha256:" + "3" * 64, ports=[{"internal": 6380, "external": 6380}])),
        (rules.CONTAINER, container(name="vault", image="sha256:" + "4" * 64, networkMode="host", ports=[])),
        (rules.SERVICE, service(containerSpec={"image": "postgres:16.10"}) | {"endpointSpec": {"ports": [{"targetPort": 5432, "publishedPort": 5433}]}}),
        (rules.SERVICE, service() | {"endpointSpec": {"ports": [{"targetPort": 8080, "publishedPort": 9055}]}}),
    ],
)
def test_sensitive_port_in_public_fails(type_: str, props: dict[str, Any]) -> None:
    assert len(violations(rules.sensitive_ports_private, resource(type_, props))) == 1


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (rules.CONTAINER, container()),
        (rules.CONTAINER, container(name="vault", image="hashicorp/vault:1.18.3", ports=[{"internal": 8200, "external": 8200, "ip": "127.0.0.1"}])),
        (rules.CONTAINER, container(name="nginx", image="nginx:1.27.3", ports=[{"internal": 443, "external": 443, "ip": "0.0.0.0"}])),
        (rules.CONTAINER, container(name="vault", image="hashicorp/vault:1.18.3", networkMode="host", ports=[],
                                    uploads=[{"file": "/vault/config/vault.hcl", "content": VAULT_HCL}])),
        (rules.SERVICE, service()),
    ],
)
def test_sensitive_port_kept_private_passes(type_: str, props: dict[str, Any]) -> None:
    assert violations(rules.sensitive_ports_private, resource(type_, props)) == []


def test_the_pack_pins_what_the_project_pins() -> None:
    """The CLI builds the pack its own virtualenv from policies/requirements.txt: same versions as CI's."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]

    def pins(path: Path) -> dict[str, str]:
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return dict(line.split("==", 1) for line in lines if line)

    pack, project = pins(root / "policies" / "requirements.txt"), pins(root / "requirements.txt")
    assert set(pack) == {"pulumi", "pulumi-policy"}
    assert all(project[name] == version for name, version in pack.items())
    manifest = yaml.safe_load((root / "policies" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python" and manifest["version"]
