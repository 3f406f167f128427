"""Under mocks: Nginx is the only public door; MinIO's bucket, policies and user; the registry's auth;
credentials are secrets in the CredentialBook."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pulumi
import yaml

from components.assembly import stack_upstreams
from components.config import StackConfig, load_stack_config
from components.platform.host.component import Host, HostArgs
from components.services.edge import component as edge
from components.services.edge import settings as edge_settings
from components.services.registry import component as registry
from components.services.registry import settings as registry_settings
from components.services.registry.settings import public_host
from components.services.storage import component as storage
from components.services.storage import settings as storage_settings
from components.shared.publishing import CredentialBook
from tests.support.rendered import nginx_config
from tools.offline import (
    PROJECT,
    Mocks,
    ProgramRun,
    RecordingMonitor,
    Registration,
    is_secret,
    plaintext_strings,
    read_stack_values,
    reveal,
    stack_file,
)

CONTAINER = "docker:index/container:Container"
STORAGE = "samarth:storage:Storage"
PUBLIC_BINDS = {"0.0.0.0", "::", ""}


def _config(stack: str) -> StackConfig:
    values, _ = read_stack_values(stack_file(stack))
    return load_stack_config(PROJECT, values)


def test_nginx_is_the_only_container_with_public_ports_and_only_80_443(stack_run: ProgramRun) -> None:
    config = _config(stack_run.stack)
    private_ips = {server.private_ip for server in config.servers.values()} | {"127.0.0.1"}
    containers = {reveal(c.inputs)["name"]: c for c in stack_run.of_type(CONTAINER)}
    assert {"nginx", "registry", "minio"} <= set(containers)
    public: dict[str, list[int]] = {}
    for name, container in containers.items():
        for port in reveal(container.inputs).get("ports") or []:
            ip = port.get("ip")
            assert ip is not None, f"{name}: port {port['internal']} has no explicit ip (docker defaults to 0.0.0.0)"
            if ip in PUBLIC_BINDS:
                public.setdefault(name, []).append(int(port["external"]))
            else:
                assert ip in private_ips, f"{name} binds {ip}, neither a private IP nor loopback"
    assert public == {"nginx": [80, 443]}


def test_nginx_config_routes_to_private_ips_from_hosts(stack_run: ProgramRun) -> None:
    config = _config(stack_run.stack)
    app = config.servers["application"].private_ip
    master = config.servers["swarm-master"].private_ip
    (reload,) = [c for c in stack_run.of_type("command:remote:Command") if c.name == "nginx-reload"]
    text = reload.inputs["stdin"]
    assert text == nginx_config(config, app, master)
    assert f"proxy_pass http://{app}:{registry.PORT};" in text
    assert f"proxy_pass http://{app}:{storage.API_PORT};" in text
    for _, route in config.edge_routes():
        if route.upstream == "swarm":
            assert f"proxy_pass http://{master}:{route.port};" in text
    # The reload re-runs for a new config and a new container.
    (container,) = [c for c in stack_run.of_type(CONTAINER) if c.inputs["name"] == "nginx"]
    assert container.urn in reload.dependencies
    assert len(reload.inputs["triggers"]) == 2


def test_rendered_nginx_config_has_redirect_websockets_registry_needs_and_vault_allow_list() -> None:
    config = _config("prod")
    text = nginx_config(config, "10.20.0.10", "10.20.0.31")
    servers = _server_blocks(text)
    assert "return 301 https://$host$request_uri;" in servers["_:80"]
    assert "ssl_reject_handshake on;" in servers["_:443"]
    registry_block = servers[f"{public_host(config.edge_routes())}:443"]
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;", "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert directive in registry_block
    for block in (b for key, b in servers.items() if key.endswith(":443") and not key.startswith("_")):
        assert "proxy_set_header Upgrade $http_upgrade;" in block
        assert "proxy_set_header Connection $connection_upgrade;" in block
    (vault_route,) = [r for r in config.edge.routes if r.upstream == "vault"]
    vault_block = servers[f"{vault_route.host}:443"]
    allows = [line.strip() for line in vault_block.splitlines() if line.strip().startswith(("allow", "deny"))]
    assert vault_route.allow is not None
    assert allows == [*(f"allow {n};" for n in vault_route.allow), "deny all;"]
    # Downloads only: MinIO's S3 API is not writable through the public door.
    (minio_route,) = [r for r in config.edge.routes if r.upstream == "minio"]
    assert "limit_except GET { deny all; }" in servers[f"{minio_route.host}:443"]
    listens = {line.strip() for line in text.splitlines() if line.strip().startswith("listen")}
    assert listens == {
        "listen 80 default_server;", "listen 80;", "listen 443 ssl default_server;", "listen 443 ssl;", f"listen 127.0.0.1:{edge.HEALTH_PORT};"
    }


def _server_blocks(text: str) -> dict[str, str]:
    """``{"<server_name>:<port>": block text}`` for the top-level server blocks."""
    blocks: dict[str, str] = {}
    for chunk in text.split("\nserver {")[1:]:
        block = chunk.split("\n}\n", 1)[0]
        names = [line.split()[1].rstrip(";") for line in block.splitlines() if line.strip().startswith("server_name")]
        port = "443" if "listen 443" in block else "80" if "listen 80" in block else "health"
        blocks[f"{names[0] if names else 'health'}:{port}"] = block
    return blocks


def test_each_upstream_is_declared_once_by_the_component_that_runs_it() -> None:
    config = _config("prod")
    assert config.observability.enabled() == ["sentry", "posthog"]
    declared = [(upstream.name, upstream.server) for upstream in stack_upstreams(config)]
    assert declared == [
        ("vault", "application"),
        ("minio", "application"),
        ("registry", "application"),
        ("sentry", "application"),
        ("posthog", "application"),
        ("swarm", "swarm-master"),
    ]
    # Only what the stack installs is offered: a route to Sentry needs Sentry.
    observability = config.observability.model_copy(
        update={"sentry": config.observability.sentry.model_copy(update={"enabled": False})}
    )
    without_sentry = config.model_copy(update={"observability": observability})
    assert "sentry" not in [upstream.name for upstream in stack_upstreams(without_sentry)]


def test_sentry_and_posthog_are_served_at_their_observability_names_and_ports() -> None:
    config = _config("prod")
    servers = _server_blocks(nginx_config(config, "10.20.0.10", "10.20.0.31"))
    for settings in (config.observability.sentry, config.observability.posthog):
        assert f"proxy_pass http://10.20.0.10:{settings.port};" in servers[f"{settings.host_name}:443"]


def _storage_own(run: ProgramRun, type_: str) -> Registration:
    """The one resource of ``type_`` that the storage component (the doc-generator bucket) owns; other
    components (backups) add MinIO users and buckets of their own."""
    (component,) = run.of_type(STORAGE)
    (resource,) = [r for r in run.under(component) if r.type == type_]
    return resource


def test_minio_bucket_policy_user_and_anonymous_download(prod: ProgramRun) -> None:
    (provider,) = prod.of_type("pulumi:providers:minio")
    assert provider.inputs["minioServer"] == "10.20.0.10:9000"
    assert is_secret(provider.inputs["minioUser"]) and is_secret(provider.inputs["minioPassword"])
    minio_types = [r for r in prod.registrations if r.type.startswith("minio:")]
    assert {r.provider_urn for r in minio_types} == {provider.urn}

    bucket = _storage_own(prod, "minio:index/s3Bucket:S3Bucket")
    assert bucket.inputs["bucket"] == "doc-generator"
    assert bucket.inputs.get("acl") in (None, "private"), "public-read grants listing of every bucket"
    bucket_policy = _storage_own(prod, "minio:index/s3BucketPolicy:S3BucketPolicy")
    assert bucket_policy.inputs["bucket"] == "doc-generator"
    assert json.loads(bucket_policy.inputs["policy"]) == storage.anonymous_download_policy("doc-generator")
    policy = _storage_own(prod, "minio:index/iamPolicy:IamPolicy")
    assert policy.inputs["name"] == "doc-generator"
    assert json.loads(policy.inputs["policy"]) == json.loads(storage.POLICY_FILE.read_text())
    user = _storage_own(prod, "minio:index/iamUser:IamUser")
    assert user.inputs["name"] == "doc-generator" and is_secret(user.inputs["secret"])
    attachment = _storage_own(prod, "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment")
    assert (attachment.inputs["userName"], attachment.inputs["policyName"]) == ("doc-generator", "doc-generator")
    # The provider waits for a healthy MinIO.
    (container,) = [c for c in prod.of_type(CONTAINER) if c.inputs["name"] == "minio"]
    assert container.urn in provider.dependencies and container.inputs["wait"] is True
    assert is_secret(container.inputs["envs"])


def test_anonymous_policy_allows_exactly_get_object_and_bucket_location() -> None:
    statements = storage.anonymous_download_policy("doc-generator")["Statement"]
    granted = set()
    for statement in statements:
        assert statement["Effect"] == "Allow" and statement["Principal"] == {"AWS": ["*"]}
        assert set(statement) == {"Effect", "Principal", "Action", "Resource"}, "no conditions, no extras"
        for action in statement["Action"]:
            for resource in statement["Resource"]:
                granted.add((action, resource))
    assert granted == {
        ("s3:GetObject", "arn:aws:s3:::doc-generator/*"),
        ("s3:GetBucketLocation", "arn:aws:s3:::doc-generator"),
    }


def test_doc_generator_iam_policy_is_scoped_to_its_bucket() -> None:
    document = json.loads(storage.POLICY_FILE.read_text())
    resources = [r for s in document["Statement"] for r in s["Resource"]]
    assert resources and all(r in ("arn:aws:s3:::doc-generator", "arn:aws:s3:::doc-generator/*") for r in resources)
    actions = [a for s in document["Statement"] for a in s["Action"]]
    assert all(a.startswith("s3:") and "*" not in a for a in actions)
    assert all(s["Effect"] == "Allow" and "Principal" not in s for s in document["Statement"])


def test_registry_requires_htpasswd_auth_with_the_generated_bcrypt_hash(prod: ProgramRun) -> None:
    (container,) = [c for c in prod.of_type(CONTAINER) if c.inputs["name"] == "registry"]
    assert is_secret(container.inputs["uploads"])
    uploads = {u["file"]: u["content"] for u in reveal(container.inputs["uploads"])}
    config = yaml.safe_load(uploads[registry.CONFIG_PATH])
    assert config["auth"] == {"htpasswd": {"realm": "samarth-registry", "path": registry.HTPASSWD_PATH}}
    assert config["http"]["host"] == "https://registry.samarth.example.org"
    passwords = {r.name: r for r in prod.of_type("random:index/randomPassword:RandomPassword")}
    # Two users, each with a password of its own: the swarm's, and Jenkins' for its pushes.
    assert uploads[registry.HTPASSWD_PATH] == (
        f"{registry.USERNAME}:{reveal(passwords['registry-password'].outputs['bcryptHash'])}\n"
        f"{registry.JENKINS_USERNAME}:{reveal(passwords['registry-jenkins-password'].outputs['bcryptHash'])}\n"
    )
    assert prod.exports["registry"] == {"server": "registry.samarth.example.org", "username": registry.USERNAME}


def test_containers_pinned_limited_checked_and_data_protected(prod: ProgramRun) -> None:
    config = _config("prod")
    placed = {p.what: p.memory_mib for m in (storage_settings, registry_settings, edge_settings) for p in m.declare(config, ()).placements}
    images = {"minio": config.versions.minio, "registry": config.versions.registry, "nginx": config.versions.nginx}
    for name, image in images.items():
        (container,) = [c for c in prod.of_type(CONTAINER) if c.inputs["name"] == name]
        assert container.inputs["restart"] == "unless-stopped"
        assert container.inputs["networkMode"] == "bridge"
        assert container.inputs["healthcheck"]["tests"][0] == "CMD"
        assert container.inputs["memory"] == placed[name]
        assert container.delete_before_replace
        (remote_image,) = [r for r in prod.of_type("docker:index/remoteImage:RemoteImage") if r.name == f"{name}-image"]
        assert remote_image.inputs["name"] == image and remote_image.inputs["keepLocally"] is True
    for name in ("minio-data", "registry-data"):
        volume = prod.named("docker:index/volume:Volume", name)
        assert volume.protect and volume.retain_on_delete


def test_no_generated_credential_appears_in_plaintext(stack_run: ProgramRun) -> None:
    generated = set()
    for password in stack_run.of_type("random:index/randomPassword:RandomPassword"):
        generated |= {reveal(password.outputs["result"]), reveal(password.outputs["bcryptHash"])}
    for registration in stack_run.registrations:
        for text in plaintext_strings(registration.inputs):
            leaked = [g for g in generated if g in text]
            assert not leaked, f"{registration.type} {registration.name} carries a generated credential in plaintext"


def _book_of_components() -> dict[str, dict[str, tuple[Any, bool]]]:
    """Build MinIO and the registry under mocks and return the book as ``{service: {key: (value, secret)}}``."""
    config = _config("prod")
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="prod", preview=False, monitor=RecordingMonitor(mocks))
    book = CredentialBook()
    result: dict[str, dict[str, tuple[Any, bool]]] = {}

    async def collect() -> None:
        for service, values in book.services().items():
            for key, value in values.items():
                output = pulumi.Output.from_input(value)
                result.setdefault(service, {})[key] = (await output.future(), await output.is_secret())

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        host = Host("application", HostArgs(server=config.servers["application"], access=config.access))
        storage.Storage("minio", storage.StorageArgs(host=host, image=config.versions.minio, book=book))
        registry.Registry(
            "registry",
            registry.RegistryArgs(host=host, image=config.versions.registry, public_host=public_host(config.edge_routes()), book=book),
        )
        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    program()
    return result


def test_credentials_are_in_the_book_and_passwords_are_secret() -> None:
    book = _book_of_components()
    doc_generator, registry_book = book["samarth/doc-generator"], book["samarth/registry"]
    assert set(doc_generator) == {"MINIO_URL", "MINIO_USER", "MINIO_PASSWORD"}
    assert doc_generator["MINIO_URL"][0] == "10.20.0.10:9000"
    assert doc_generator["MINIO_USER"][0] == "doc-generator"
    assert doc_generator["MINIO_PASSWORD"][1], "MINIO_PASSWORD must be a secret"
    assert set(registry_book) == {"DOCKER_SERVER", "DOCKER_USERNAME", "DOCKER_PASSWORD"}
    assert registry_book["DOCKER_SERVER"][0] == "registry.samarth.example.org"
    assert registry_book["DOCKER_USERNAME"][0] == registry.JENKINS_USERNAME
    assert registry_book["DOCKER_PASSWORD"][1], "DOCKER_PASSWORD must be a secret"


def test_minio_and_registry_credentials_are_published_to_vault(stack_run: ProgramRun) -> None:
    config = _config(stack_run.stack)
    published = {}
    for secret in stack_run.of_type("vault:kv/secretV2:SecretV2"):
        assert secret.inputs["mount"] == "kv" and is_secret(secret.inputs["dataJson"])
        published[secret.inputs["name"]] = json.loads(reveal(secret.inputs["dataJson"]))
    doc_generator = published["samarth/doc-generator"]
    assert {"MINIO_URL", "MINIO_USER", "MINIO_PASSWORD", "SQL_HOST"} <= set(doc_generator)
    assert doc_generator["MINIO_URL"] == f"{config.servers['application'].private_ip}:{storage.API_PORT}"
    user = _storage_own(stack_run, "minio:index/iamUser:IamUser")
    assert doc_generator["MINIO_USER"] == user.inputs["name"]
    assert doc_generator["MINIO_PASSWORD"] == reveal(user.inputs["secret"])
    passwords = {r.name: reveal(r.outputs["result"]) for r in stack_run.of_type("random:index/randomPassword:RandomPassword")}
    # Jenkins' own registry user, not the swarm's: the swarm's password is in no Vault path.
    assert published["samarth/registry"] == {
        "DOCKER_SERVER": public_host(config.edge_routes()),
        "DOCKER_USERNAME": registry.JENKINS_USERNAME,
        "DOCKER_PASSWORD": passwords["registry-jenkins-password"],
    }
    assert not [path for path, values in published.items() if passwords["registry-password"] in values.values()]


def test_vault_upstream_follows_vault_port_and_verifies_vaults_certificate() -> None:
    config = _config("prod")
    (vault_route,) = [r for r in config.edge.routes if r.upstream == "vault"]
    block = _server_blocks(nginx_config(config, "10.20.0.10", "10.20.0.31"))[f"{vault_route.host}:443"]
    assert f"proxy_pass https://10.20.0.10:{config.vault.port};" in block
    for directive in (
        f"proxy_ssl_trusted_certificate {edge.ca_file('vault')};",
        "proxy_ssl_verify on;",
        f"proxy_ssl_name vault.{config.domain};",
        "proxy_ssl_server_name on;",
    ):
        assert directive in block
    moved = config.model_copy(update={"vault": config.vault.model_copy(update={"port": 8300, "server_name": "vault.samarth.internal"})})
    block = _server_blocks(nginx_config(moved, "10.20.0.10", "10.20.0.31"))[f"{vault_route.host}:443"]
    assert "proxy_pass https://10.20.0.10:8300;" in block and "proxy_ssl_name vault.samarth.internal;" in block
    plain = config.model_copy(update={"vault": config.vault.model_copy(update={"plain_http": True})})
    block = _server_blocks(nginx_config(plain, "10.20.0.10", "10.20.0.31"))[f"{vault_route.host}:443"]
    assert f"proxy_pass http://10.20.0.10:{config.vault.port};" in block and "proxy_ssl" not in block
