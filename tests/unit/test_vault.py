"""Vault on the application server: container, bootstrap scripts (run in a real shell), provider
configuration, the Jenkins policy and AppRole, and the one publishing mechanism."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any, Optional

import hcl2
import pulumi
import pytest

from components.config import validate
from components.platform.host.component import Host, HostArgs
from components.services.vault import component as vault_module
from components.services.vault import settings as vault_settings
from components.services.vault.settings import VaultSettings
from components.shared.publishing import CredentialBook
from components.shared.service import APPLICATIONS, PLATFORM
from tests.support.program_runs import program_rerun, program_run
from tools.offline import (
    PROJECT,
    Mocks,
    ProgramRun,
    RecordingMonitor,
    is_secret,
    plaintext_strings,
    read_stack_values,
    reveal,
    stack_file,
)

CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"
SECRET_V2 = "vault:kv/secretV2:SecretV2"


def _hcl(text: str) -> dict[str, Any]:
    """Parse HCL as Vault would read it: quoted strings as their values, blocks without markers."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    return hcl2.loads(text, serialization_options=options)


def _component(run: ProgramRun):
    (component,) = run.of_type("samarth:vault:VaultServer")
    return component


def _stack_config(stack: str):
    values, _ = read_stack_values(stack_file(stack))
    prefix = f"{PROJECT}:"
    return validate({k[len(prefix):]: json.loads(v) if v[:1] in "{[" else v for k, v in values.items()})


def _init_document(run: ProgramRun) -> dict[str, Any]:
    init = run.named(COMMAND, "application-vault-init")
    assert is_secret(init.outputs["stdout"])
    return json.loads(reveal(init.outputs["stdout"]))


# --- the container -------------------------------------------------------------------------------


def test_one_vault_container_on_the_application_server_never_on_a_public_or_wildcard_address(stack_run: ProgramRun) -> None:
    config = _stack_config(stack_run.stack)
    vaults = [r for r in stack_run.of_type(CONTAINER) if "vault" in str(reveal(r.inputs.get("command")))]
    assert len(vaults) == 1
    (container,) = vaults
    assert container.parent == _component(stack_run).urn
    provider = stack_run.provider_of(container)
    assert provider is not None and provider.name == "application-docker"
    inputs = container.plain_inputs
    assert inputs["networkMode"] == "host"
    assert "ports" not in inputs
    assert inputs["restart"] == "unless-stopped"
    assert inputs["capabilities"]["adds"] == ["IPC_LOCK"]
    assert inputs["memory"] == config.vault.memory_mib
    assert [p.memory_mib for p in vault_settings.declare(config, ()).placements] == [config.vault.memory_mib]
    assert inputs["healthcheck"]["tests"][0] == "CMD-SHELL"
    assert container.delete_before_replace

    server = _hcl(inputs["uploads"][0]["content"])
    addresses = sorted(listener["tcp"]["address"] for listener in server["listener"])
    private_ip = config.servers["application"].private_ip
    assert addresses == sorted([f"127.0.0.1:{config.vault.port}", f"{private_ip}:{config.vault.port}"])
    public = config.servers["application"].public_address
    for text in plaintext_strings(inputs):
        assert "0.0.0.0" not in text and "[::]" not in text
        assert public is None or public not in text


def test_server_config_uses_raft_on_the_protected_data_volume_with_the_ui(prod: ProgramRun) -> None:
    container = prod.named(CONTAINER, "application-vault")
    inputs = container.plain_inputs
    server = _hcl(inputs["uploads"][0]["content"])
    assert inputs["command"] == ["vault", "server", f"-config={inputs['uploads'][0]['file']}"]
    assert server["ui"] is True
    assert server["disable_mlock"] is True
    (storage,) = server["storage"]
    assert list(storage) == ["raft"]
    assert storage["raft"]["performance_multiplier"] == 1
    mounts = {v["containerPath"]: v.get("volumeName") for v in inputs["volumes"]}
    data_volume = mounts[storage["raft"]["path"]]
    volume = prod.named("docker:index/volume:Volume", data_volume)
    assert volume.protect and volume.retain_on_delete
    audit_volume = prod.named("docker:index/volume:Volume", mounts["/vault/logs"])
    assert audit_volume.protect and audit_volume.retain_on_delete
    # The init output's refuge between `operator init` and the state write: a volume of its own.
    recovery_volume = prod.named("docker:index/volume:Volume", mounts["/vault/recovery"])
    assert recovery_volume.protect and recovery_volume.retain_on_delete
    assert len({data_volume, mounts["/vault/logs"], mounts["/vault/recovery"]}) == 3
    assert server["api_addr"] == "https://10.20.0.10:8200"
    assert server["cluster_addr"] == "https://10.20.0.10:8201"
    for listener in server["listener"]:
        assert "tls_disable" not in listener["tcp"]
        assert (listener["tcp"]["tls_cert_file"], listener["tcp"]["tls_key_file"]) == ("/vault/tls/cert.pem", "/vault/tls/key.pem")


OPERATOR_CA = "-----BEGIN CERTIFICATE-----\nMIIBoperatorCA\n-----END CERTIFICATE-----\n"


@pytest.fixture
def operator_ca(tmp_path: Path) -> Path:
    """The operator's CA certificate file on the machine running Pulumi."""
    path = tmp_path / "operator-ca.pem"
    path.write_text(OPERATOR_CA)
    return path


def test_tls_and_openbao_change_the_rendered_config(operator_ca: Path) -> None:
    settings = VaultSettings.model_validate(
        {
            "distribution": "openbao",
            "tls": {"certFile": "/etc/ssl/vault.pem", "keyFile": "/etc/ssl/vault.key", "caFile": str(operator_ca)},
            "apiAddr": "https://vault.samarth.example.org:8200",
        }
    )
    server = _hcl(vault_module.render_server_config(settings, "10.20.0.10", "application"))
    assert server["api_addr"] == "https://vault.samarth.example.org:8200"
    assert "disable_mlock" not in server  # OpenBao has no mlock and warns about the setting
    assert server["storage"][0]["raft"]["path"] == "/openbao/file"
    for listener in server["listener"]:
        tcp = listener["tcp"]
        assert "tls_disable" not in tcp
        assert tcp["tls_cert_file"] == "/openbao/tls/cert.pem"
        assert tcp["tls_key_file"] == "/openbao/tls/key.pem"
    assert "BINARY=bao" in vault_module.init_script("vault", settings).splitlines()


# --- the policy -----------------------------------------------------------------------------------


def test_jenkins_policy_reads_each_application_path_by_name_and_no_platform_path(prod: ProgramRun) -> None:
    policy = prod.named("vault:index/policy:Policy", "vault-policy-jenkins")
    assert policy.inputs["name"] == "jenkins"
    document = _hcl(policy.inputs["policy"])
    granted = {path: rules["capabilities"] for block in document["path"] for path, rules in block.items()}
    published = {r.plain_inputs["name"] for r in prod.of_type(SECRET_V2)}
    applications = {p for p in published if p.startswith("samarth/")}
    # Every application path the program publishes, read by name (no glob: a path the program stopped
    # publishing keeps its earlier versions in KV v2, and stays out of reach); listing the names only.
    assert granted == {**{f"kv/data/{p}": ["read"] for p in applications}, "kv/metadata/samarth/*": ["list"]}
    assert {"samarth/registry", "samarth/doc-generator", "samarth/esamwad-backend", "samarth/sentry"} <= applications
    # The backups' repositories and keys and the observability admin accounts are the platform's.
    assert {"platform/backups", "platform/sentry", "platform/posthog"} <= published
    assert not [p for p in granted if "platform" in p or p.endswith("/backups")]


def test_what_moved_to_the_platform_area_keeps_its_resource_through_an_alias() -> None:
    registrations = _publish_under_mocks(
        {"backups": ({"DB1_RESTIC_PASSWORD": "x"}, PLATFORM), "sentry": ({"SENTRY_ADMIN_PASSWORD": "y"}, PLATFORM)},
        also={"sentry": {"SENTRY_URL": "https://sentry.example.org"}},
    )
    secrets = {r.name: r for r in registrations if r.type == SECRET_V2}
    assert {r.plain_inputs["name"] for r in secrets.values()} == {"platform/backups", "platform/sentry", "samarth/sentry"}
    backups = secrets["vault-kv-platform-backups"]
    # kv/samarth/backups was a resource of its own: the move replaces it (same URN), not a second copy.
    assert backups.aliases == [backups.urn.replace("vault-kv-platform-backups", "vault-kv-samarth-backups")]
    # kv/samarth/sentry is still published (the URL): the admin account is a new resource beside it.
    assert secrets["vault-kv-platform-sentry"].aliases == []


# --- bootstrap and provider -------------------------------------------------------------------


def test_init_output_is_secret_never_logged_and_kept(prod: ProgramRun) -> None:
    init = prod.named(COMMAND, "application-vault-init")
    assert init.inputs["logging"] == "none"
    assert "stdout" in init.additional_secret_outputs
    assert init.protect
    document = _init_document(prod)
    config = _stack_config("prod")
    assert f"KEY_SHARES={config.vault.key_shares}" in init.inputs["create"].splitlines()
    assert f"KEY_THRESHOLD={config.vault.key_threshold}" in init.inputs["create"].splitlines()
    assert len(document["unseal_keys_b64"]) == config.vault.key_shares


def test_provider_is_built_from_the_init_output_with_a_secret_token(prod: ProgramRun) -> None:
    document = _init_document(prod)
    provider = prod.named("pulumi:providers:vault", "vault")
    assert provider.inputs["address"] == "https://10.20.0.10:8200"
    assert is_secret(provider.inputs["token"])
    assert reveal(provider.inputs["token"]) == document["root_token"]
    assert prod.exports["vaultAddress"] == "https://10.20.0.10:8200"


def test_unseal_gets_the_keys_on_secret_stdin_and_reruns_every_up(prod: ProgramRun) -> None:
    document = _init_document(prod)
    unseal = prod.named(COMMAND, "application-vault-unseal")
    assert unseal.inputs["logging"] == "none"
    assert is_secret(unseal.inputs["stdin"])
    assert reveal(unseal.inputs["stdin"]).split() == document["unseal_keys_b64"]
    init = prod.named(COMMAND, "application-vault-init")
    container = prod.named(CONTAINER, "application-vault")
    assert {init.urn, container.urn} <= set(unseal.dependencies)
    assert container.outputs.get("id", "application-vault-id") in unseal.inputs["triggers"]
    # The second trigger is the run's stamp: a second run of the program differs only there.
    again = program_rerun("prod").named(COMMAND, "application-vault-unseal")
    assert again.inputs["triggers"][0] == unseal.inputs["triggers"][0]
    assert again.inputs["triggers"][1] != unseal.inputs["triggers"][1]


def test_vault_resources_exist_use_the_provider_and_wait_for_the_unseal(prod: ProgramRun) -> None:
    config = _stack_config("prod")
    unseal = prod.named(COMMAND, "application-vault-unseal")
    provider = prod.named("pulumi:providers:vault", "vault")
    vault_resources = [r for r in prod.registrations if r.type.startswith("vault:")]
    assert vault_resources
    for resource in vault_resources:
        assert prod.provider_of(resource) is provider, resource.name
        assert unseal.urn in resource.dependencies, resource.name

    mount = prod.named("vault:index/mount:Mount", "vault-kv")
    assert (mount.inputs["path"], mount.inputs["type"], mount.inputs["options"]) == ("kv", "kv", {"version": "2"})
    audit = prod.named("vault:index/audit:Audit", "vault-audit-file")
    assert audit.inputs["type"] == "file"
    assert audit.inputs["options"]["file_path"] == f"/vault/logs/{config.vault.audit_file}"
    backend = prod.named("vault:index/authBackend:AuthBackend", "vault-approle")
    assert backend.inputs["type"] == "approle"
    role = prod.named("vault:appRole/authBackendRole:AuthBackendRole", "vault-approle-jenkins")
    assert role.inputs["roleName"] == "jenkins"
    assert role.inputs["tokenPolicies"] == ["jenkins"]
    assert role.inputs["tokenTtl"] == config.vault.jenkins.token_ttl_seconds
    assert role.inputs["tokenMaxTtl"] == config.vault.jenkins.token_max_ttl_seconds
    secret_id = prod.named("vault:appRole/authBackendRoleSecretId:AuthBackendRoleSecretId", "vault-approle-jenkins-secret-id")
    assert "secretId" in secret_id.additional_secret_outputs
    assert is_secret(secret_id.outputs["secretId"])
    assert prod.exports["jenkinsRoleId"] == role.outputs["roleId"]
    assert prod.exports["jenkinsSecretId"] == reveal(secret_id.outputs["secretId"])


def test_no_generated_secret_appears_in_plaintext_anywhere(stack_run: ProgramRun) -> None:
    document = _init_document(stack_run)
    secret_id = stack_run.named(
        "vault:appRole/authBackendRoleSecretId:AuthBackendRoleSecretId", "vault-approle-jenkins-secret-id"
    )
    generated = [*document["unseal_keys_b64"], *document["unseal_keys_hex"], document["root_token"], reveal(secret_id.outputs["secretId"])]
    generated += [reveal(r.outputs["result"]) for r in stack_run.of_type("random:index/randomPassword:RandomPassword")]
    generated += [reveal(r.outputs["privateKeyPem"]) for r in stack_run.of_type("tls:index/privateKey:PrivateKey")]
    for registration in stack_run.registrations:
        for text in [*plaintext_strings(registration.inputs), *plaintext_strings(registration.outputs)]:
            for value in generated:
                assert value not in text, f"{registration.type} {registration.name} carries a generated secret in plaintext"


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vault", "expected"),
    [
        ({"keyShares": 3, "keyThreshold": 4}, "vault: keyThreshold (4) is more than keyShares (3)"),
        ({"jenkins": {"tokenTtlSeconds": 7200}}, "vault.jenkins: tokenTtlSeconds (7200) is more than tokenMaxTtlSeconds (3600)"),
        ({"auditFile": "../etc/passwd"}, "vault.auditFile:"),
        ({"distribution": "consul"}, "vault.distribution:"),
        ({"tls": {"certFile": "vault.pem", "keyFile": "/k", "caFile": "/etc/passwd"}}, "vault.tls.certFile:"),
        ({"tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/etc/passwd"}}, "vault.tls: caFile: /etc/passwd is not a PEM certificate"),
        ({"tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/nonexistent/ca.pem"}}, "vault.tls: caFile: cannot read /nonexistent/ca.pem on this machine"),
        ({"tls": {"certFile": "/c", "keyFile": "/k"}}, "vault.tls.caFile:"),
        ({"plainHttp": True, "tls": {"certFile": "/c", "keyFile": "/k", "caFile": "/etc/ssl/certs/ca-certificates.crt"}}, "plainHttp: true turns TLS off, yet tls is set"),
        ({"apiAddr": "http://vault.samarth.example.org:8200"}, "apiAddr: http://vault.samarth.example.org:8200 is plain http, yet Vault serves TLS"),
        ({"serverName": "not a name"}, "vault.serverName:"),
    ],
)
def test_bad_vault_config_stops_before_any_resource(vault: dict[str, Any], expected: str) -> None:
    run = program_run("prod", overrides={"vault": vault})
    assert run.registrations == []
    assert expected in str(run.error)


def test_vault_image_is_pinned() -> None:
    run = program_run("prod", overrides={"versions": {**json.loads(_versions("prod")), "vault": "hashicorp/vault:latest"}})
    assert run.registrations == []
    assert "versions.vault:" in str(run.error)


def _versions(stack: str) -> str:
    values, _ = read_stack_values(stack_file(stack))
    return values[f"{PROJECT}:versions"]


IMPORTED: dict[str, Any] = {"unseal_keys_b64": ["a2V5LW9uZQ==", "a2V5LXR3bw=="], "root_token": "hvs.imported-root-token"}


def test_an_imported_init_replaces_the_init_command() -> None:
    from tools.offline import TEST_SECRETS

    run = program_run("prod", secrets={**TEST_SECRETS, "vaultInit": json.dumps(IMPORTED)})
    assert run.error is None
    assert not [r for r in run.of_type(COMMAND) if r.name.endswith("-vault-init")]
    unseal = run.named(COMMAND, "application-vault-unseal")
    assert reveal(unseal.inputs["stdin"]).split() == IMPORTED["unseal_keys_b64"]
    provider = run.named("pulumi:providers:vault", "vault")
    assert is_secret(provider.inputs["token"]) and reveal(provider.inputs["token"]) == IMPORTED["root_token"]
    for registration in run.registrations:
        for text in plaintext_strings(registration.inputs):
            assert IMPORTED["root_token"] not in text and IMPORTED["unseal_keys_b64"][0] not in text


@pytest.mark.parametrize(
    ("secrets_key", "text", "expected"),
    [
        ("secret", "{\"root_token\": \"x\"}", "vaultInit: expected the JSON"),
        ("plain", json.dumps(IMPORTED), "vaultInit: stored in plaintext"),
    ],
)
def test_a_bad_or_plaintext_imported_init_is_refused(secrets_key: str, text: str, expected: str) -> None:
    from tools.offline import TEST_SECRETS

    if secrets_key == "secret":
        run = program_run("prod", secrets={**TEST_SECRETS, "vaultInit": text})
    else:
        run = program_run("prod", overrides={"vaultInit": text})
    assert run.registrations == []
    assert expected in str(run.error)
    assert "hvs." not in str(run.error) and "a2V5" not in str(run.error)


# --- publishing -----------------------------------------------------------------------------------


def _publish_under_mocks(book_entries: dict[str, Any], name: str = "vault", also: Optional[dict[str, dict[str, Any]]] = None) -> list:
    """Build the Vault component alone under mocks and publish a book (``{service: values}``, or
    ``{service: (values, area)}``; ``also``: more application entries); return the registrations."""
    from pulumi.runtime import settings as runtime_settings

    config = _stack_config("prod")
    runtime_settings.ROOT.set(None)
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="prod", preview=False, monitor=monitor)

    @pulumi.runtime.test
    def program() -> None:
        host = Host("application", HostArgs(server=config.servers["application"], access=config.access))
        server = vault_module.VaultServer(
            name, vault_module.VaultServerArgs(host=host, settings=config.vault, image=config.versions.vault, server_name=config.vault_server_name)
        )
        book = CredentialBook()
        for service, entry in book_entries.items():
            values, area = entry if isinstance(entry, tuple) else (entry, APPLICATIONS)
            book.add(service, values, area)
        for service, values in (also or {}).items():
            book.add(service, values)
        server.publish(book)

    program()
    return monitor.registrations


def test_publish_writes_one_secret_per_service_with_exactly_the_books_env_names() -> None:
    password = pulumi.Output.secret("pw-generated-for-test")
    entries = {
        "odk-adapter": {"DATABASE_URL": pulumi.Output.concat("postgresql://odk:", password, "@10.20.0.22:5432/odk"), "QUEUE_HOST": "10.20.0.22"},
        "minio": {"MINIO_ROOT_USER": "samarth", "MINIO_ROOT_PASSWORD": password},
    }
    registrations = _publish_under_mocks(entries)
    secrets = {r.inputs["name"]: r for r in registrations if r.type == SECRET_V2}
    assert sorted(secrets) == ["samarth/minio", "samarth/odk-adapter"]
    for service, values in entries.items():
        secret = secrets[f"samarth/{service}"]
        assert secret.inputs["mount"] == "kv"
        assert is_secret(secret.inputs["dataJson"])
        assert sorted(json.loads(reveal(secret.inputs["dataJson"]))) == sorted(values)
        assert "pw-generated-for-test" not in "".join(plaintext_strings(secret.inputs))
    published = json.loads(reveal(secrets["samarth/odk-adapter"].inputs["dataJson"]))
    assert published["DATABASE_URL"] == "postgresql://odk:pw-generated-for-test@10.20.0.22:5432/odk"


# --- the bootstrap scripts, run in a real shell ----------------------------------------------------

# A stand-in for `docker exec <container> vault ...` that keeps Vault's state in files, so the
# scripts' decisions can be observed: which vault commands ran and with which arguments.
FAKE_DOCKER = r"""#!/bin/sh
state="$FAKE_VAULT_STATE"
echo "$*" >> "$state/calls"
[ "$1" = exec ] || exit 99
shift
[ "$1" = -i ] && shift
root=false
[ "$1" = -u ] && [ "$2" = 0 ] && { root=true; shift 2; }
shift  # container
if [ "$1" != vault ]; then
  # Anything but the CLI runs here as root, with the recovery volume at $state/recovery.
  [ "$root" = true ] || exit 96
  n=$#; i=0
  while [ "$i" -lt "$n" ]; do
    a=$1; shift
    case "$a" in /vault/recovery*) a="$state/recovery${a#/vault/recovery}" ;; esac
    set -- "$@" "$a"; i=$((i + 1))
  done
  PATH="$state/cli:$PATH" exec "$@"
fi
shift  # binary
[ -e "$state/reachable" ] || { echo "Error checking seal status: connection refused" >&2; exit 1; }
initialized=false; [ -e "$state/initialized" ] && initialized=true
sealed=true; [ -e "$state/unsealed" ] && sealed=false
case "$1" in
  status)
    # Raft storage: HA on; an unsealed node answers as a standby ("is_self": false) as many times as
    # $state/standby-answers says, then as the active node.
    is_self=false
    if [ "$sealed" = false ]; then
      left=$(cat "$state/standby-answers" 2>/dev/null || echo 0)
      if [ "$left" -gt 0 ]; then echo $((left - 1)) > "$state/standby-answers"; else is_self=true; fi
    fi
    printf '{\n  "type": "shamir",\n  "initialized": %s,\n  "sealed": %s,\n  "ha_enabled": true,\n  "is_self": %s\n}\n' \
      "$initialized" "$sealed" "$is_self"
    [ "$sealed" = false ] && exit 0
    exit 2 ;;
  operator)
    [ -e "$state/init-fails" ] && { echo "Error initializing: 500" >&2; exit 2; }
    touch "$state/initialized"
    cat "$state/init-output" ;;
  write)
    [ "$2" = -format=json ] && [ "$3" = sys/unseal ] && [ "$4" = key=- ] || exit 98
    key=$(cat)
    echo "$key" >> "$state/keys"
    grep -qx "$key" "$state/valid" || { echo "invalid key" >&2; exit 2; }
    [ "$(grep -c . "$state/keys")" -ge "$(cat "$state/threshold")" ] && touch "$state/unsealed"
    printf '{"sealed": true}\n' ;;
  *) exit 97 ;;
esac
"""

INIT_OUTPUT = '{\n  "unseal_keys_b64": [\n    "k1",\n    "k2",\n    "k3"\n  ],\n  "root_token": "hvs.fake"\n}\n'


@pytest.fixture
def fake_vault(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    for name, body in {"docker": FAKE_DOCKER, "sleep": "#!/bin/sh\nexit 0\n"}.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    # `vault` as the in-container shell finds it: the same stand-in, reached through `docker exec`.
    (state / "cli").mkdir()
    (state / "cli" / "vault").write_text(f'#!/bin/sh\nexec "{bin_dir / "docker"}" exec vault vault "$@"\n')
    (state / "cli" / "vault").chmod(0o755)
    (state / "init-output").write_text(INIT_OUTPUT)
    (state / "calls").touch()
    (state / "valid").write_text("k1\nk2\nk3\n")
    (state / "threshold").write_text("2\n")

    def run(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_VAULT_STATE": str(state)}
        return subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True, env=env, timeout=30)

    return state, run


def _scripts(run: ProgramRun) -> tuple[str, str]:
    init = run.named(COMMAND, "application-vault-init").inputs["create"]
    unseal = run.named(COMMAND, "application-vault-unseal").inputs["create"]
    return init, unseal


def _calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines()


def test_init_runs_when_not_initialised_and_prints_only_the_init_json(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    init, _ = _scripts(prod)
    result = run(init)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["root_token"] == "hvs.fake"
    assert [c for c in _calls(state) if c.startswith("exec vault vault operator")] == ["exec vault vault operator init -format=json -key-shares=5 -key-threshold=3"]
    # Kept, root-only, until an unseal with the keys from state removes it.
    kept = state / "recovery" / "init.json"
    assert kept.read_text() == INIT_OUTPUT
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert not (state / "recovery" / "init.json.new").exists()


@pytest.mark.parametrize("leftover", ["init.json", "init.json.new"])
def test_init_recovers_the_output_a_killed_run_kept(prod: ProgramRun, fake_vault, leftover: str) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "initialized").touch()
    (state / "recovery").mkdir(mode=0o700)
    (state / "recovery" / leftover).write_text(INIT_OUTPUT)
    init, _ = _scripts(prod)
    result = run(init)
    assert result.returncode == 0, result.stderr
    assert result.stdout == INIT_OUTPUT
    assert "recovered them" in result.stderr and "hvs.fake" not in result.stderr
    assert not [c for c in _calls(state) if c.startswith("exec vault vault operator")]


@pytest.mark.parametrize("output", ["", "\n", "Error: something\n", '{"unseal_keys_b64": [], "root_token": "hvs.x"}\n', '{"unseal_keys_b64": ["k1"]}\n'])
def test_empty_or_malformed_init_output_is_a_clear_error_and_prints_nothing(prod: ProgramRun, fake_vault, output: str) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "init-output").write_text(output)
    init, _ = _scripts(prod)
    result = run(init)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "is empty or malformed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_init_prints_no_output_and_names_the_step(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "init-fails").touch()
    init, _ = _scripts(prod)
    result = run(init)
    assert result.returncode != 0 and result.stdout == ""
    assert "'vault operator init' failed" in result.stderr
    assert not (state / "recovery" / "init.json").exists()


def test_unseal_removes_the_kept_output_only_when_it_holds_the_stacks_keys(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    for name in ("reachable", "initialized", "unsealed"):
        (state / name).touch()
    (state / "recovery").mkdir(mode=0o700)
    kept = state / "recovery" / "init.json"
    kept.write_text(INIT_OUTPUT.replace("k3", "other"))
    _, unseal = _scripts(prod)
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode == 0, result.stderr
    assert kept.exists() and "holds other keys" in result.stderr and "k3" not in result.stderr
    kept.write_text(INIT_OUTPUT)
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode == 0, result.stderr
    assert not kept.exists()
    # Never on a command line: the kept file is read into the script, not grepped with keys as arguments.
    assert not [c for c in _calls(state) for key in ("k1", "k2", "k3") if key in c.split()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "printed nothing"),
        ("  \n", "printed nothing"),
        ("Error: secret-looking-text", "not JSON"),
        ('["k1"]', "no unseal_keys_b64"),
        ('{"unseal_keys_b64": ["k1"], "root_token": ""}', "no root_token"),
    ],
)
def test_the_program_reports_bad_init_output_without_its_text(text: str, expected: str) -> None:
    with pytest.raises(vault_module.InitOutputError) as error:
        vault_module.parse_init_output(text)
    assert expected in str(error.value)
    assert "secret-looking-text" not in str(error.value)
    assert isinstance(error.value, pulumi.RunError)  # reported as a message, without a traceback


def test_init_refuses_an_already_initialised_vault_and_says_how_to_import(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "initialized").touch()
    init, _ = _scripts(prod)
    result = run(init)
    assert result.returncode != 0
    assert not [c for c in _calls(state) if "operator" in c]
    assert "already initialised" in result.stderr and "pulumi config set --secret vaultInit" in result.stderr
    assert result.stdout == ""


def test_unseal_waits_until_the_node_is_active_and_says_so_when_it_never_is(prod: ProgramRun, fake_vault) -> None:
    """Unsealed is not yet active: until raft elects the node, every write the provider makes next fails."""
    state, run = fake_vault
    for name in ("reachable", "initialized", "unsealed"):
        (state / name).touch()
    _, unseal = _scripts(prod)
    (state / "standby-answers").write_text("3\n")
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode == 0, result.stderr
    assert _calls(state).count("exec vault vault status -format=json") == 4  # three answers as a standby, then active
    (state / "standby-answers").write_text("1000\n")
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode != 0
    assert "is unsealed but not the active node after 60s" in result.stderr


def test_unseal_does_nothing_when_already_unsealed(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    for name in ("reachable", "initialized", "unsealed"):
        (state / name).touch()
    _, unseal = _scripts(prod)
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode == 0, result.stderr
    assert not [c for c in _calls(state) if "write" in c]


def test_unseal_feeds_keys_on_stdin_until_unsealed(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "initialized").touch()
    _, unseal = _scripts(prod)
    result = run(unseal, "k1\nk2\nk3\n")
    assert result.returncode == 0, result.stderr
    assert (state / "unsealed").exists()
    assert (state / "keys").read_text().split() == ["k1", "k2"]  # stops at the threshold
    assert not [c for c in _calls(state) if "k1" in c or "k2" in c]  # never in argv
    # Idempotent: a second run finds it unsealed and writes nothing.
    writes = len([c for c in _calls(state) if "write" in c])
    assert run(unseal, "k1\nk2\nk3\n").returncode == 0
    assert len([c for c in _calls(state) if "write" in c]) == writes


def test_unseal_with_keys_of_another_vault_fails_clearly(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    (state / "initialized").touch()
    _, unseal = _scripts(prod)
    result = run(unseal, "other1\nother2\n")
    assert result.returncode != 0
    assert "rejected an unseal key" in result.stderr
    assert "other1" not in result.stderr


def test_unseal_of_an_uninitialised_vault_fails_clearly(prod: ProgramRun, fake_vault) -> None:
    state, run = fake_vault
    (state / "reachable").touch()
    _, unseal = _scripts(prod)
    result = run(unseal, "k1\nk2\n")
    assert result.returncode != 0
    assert "is not initialised" in result.stderr
    assert not [c for c in _calls(state) if "write" in c]


@pytest.mark.parametrize("which", ["init", "unseal"])
def test_unreachable_vault_fails_clearly(prod: ProgramRun, fake_vault, which: str) -> None:
    state, run = fake_vault
    init, unseal = _scripts(prod)
    result = run(init if which == "init" else unseal, "k1\n")
    assert result.returncode != 0
    assert "vault is unreachable" in result.stderr
    assert "docker logs vault" in result.stderr
    assert len([c for c in _calls(state) if "status" in c]) == vault_module.STATUS_ATTEMPTS
    assert not [c for c in _calls(state) if "operator" in c or "write" in c]


def _published(run: ProgramRun) -> dict[str, dict[str, str]]:
    secrets = {}
    for secret in run.of_type(SECRET_V2):
        assert secret.inputs["mount"] == "kv" and is_secret(secret.inputs["dataJson"])
        secrets[secret.inputs["name"]] = json.loads(reveal(secret.inputs["dataJson"]))
    return secrets


def test_every_database_service_has_its_env_at_kv_samarth_service(stack_run: ProgramRun) -> None:
    catalogue = _stack_config(stack_run.stack).databases.catalogue()
    published = _published(stack_run)
    assert catalogue
    for service in catalogue:
        # Other components add keys of their own (doc-generator's MINIO_* from components/services/storage/component.py).
        assert set(service.env) <= set(published[f"samarth/{service.name}"]), service.name


def test_a_service_added_in_config_is_published_too() -> None:
    run = program_run(
        "prod",
        overrides={"databases": {"services": {"reports": {"server": "db1", "engines": ["postgres"], "env": {"DATABASE_URL": "{postgres.url}"}}}}},
    )
    assert run.error is None
    published = _published(run)
    assert sorted(published["samarth/reports"]) == ["DATABASE_URL"]
    assert published["samarth/reports"]["DATABASE_URL"].startswith("postgresql://reports:")


def test_image_comes_from_versions_and_is_kept_locally(prod: ProgramRun) -> None:
    config = _stack_config("prod")
    image = prod.named("docker:index/remoteImage:RemoteImage", "application-vault-image")
    assert image.inputs["name"] == config.versions.vault
    assert image.inputs["keepLocally"] is True
    container = prod.named(CONTAINER, "application-vault")
    assert container.inputs["image"] == image.outputs["imageId"]


def test_operator_tls_files_reach_the_listeners_the_mounts_the_provider_and_nginx(operator_ca: Path) -> None:
    tls = {"certFile": "/etc/ssl/samarth/vault.pem", "keyFile": "/etc/ssl/samarth/vault.key", "caFile": str(operator_ca)}
    run = program_run("prod", overrides={"vault": {"tls": tls, "serverName": "vault.samarth.internal"}})
    assert run.error is None
    assert not run.of_type("tls:index/privateKey:PrivateKey")  # no private CA of the program's
    container = run.named(CONTAINER, "application-vault").plain_inputs
    mounts = {v["containerPath"]: v for v in container["volumes"]}
    assert mounts["/vault/tls/cert.pem"] == {"hostPath": tls["certFile"], "containerPath": "/vault/tls/cert.pem", "readOnly": True}
    assert mounts["/vault/tls/key.pem"] == {"hostPath": tls["keyFile"], "containerPath": "/vault/tls/key.pem", "readOnly": True}
    uploads = {u["file"]: u["content"] for u in container["uploads"]}
    assert uploads["/vault/tls/ca.pem"] == OPERATOR_CA
    assert "/vault/tls/key.pem" not in uploads
    assert {"VAULT_ADDR=https://127.0.0.1:8200", "VAULT_CACERT=/vault/tls/ca.pem", "VAULT_TLS_SERVER_NAME=vault.samarth.internal"} <= set(container["envs"])
    assert not [e for e in container["envs"] if "SKIP_VERIFY" in e]
    server = _hcl(container["uploads"][0]["content"])
    assert {listener["tcp"]["tls_cert_file"] for listener in server["listener"]} == {"/vault/tls/cert.pem"}
    provider = run.named("pulumi:providers:vault", "vault")
    assert provider.inputs["address"] == "https://10.20.0.10:8200"
    assert Path(provider.inputs["caCertFile"]).read_text() == OPERATOR_CA
    assert provider.inputs["tlsServerName"] == "vault.samarth.internal"
    assert run.exports["vaultCaCertificate"] == OPERATOR_CA
    nginx = run.named(CONTAINER, "nginx-container").plain_inputs
    assert {u["file"]: u["content"] for u in nginx["uploads"]}["/etc/nginx/samarth/vault-ca.pem"] == OPERATOR_CA


def test_tls_by_default_from_a_private_ca_for_the_private_address_and_name(stack_run: ProgramRun) -> None:
    config = _stack_config(stack_run.stack)
    name = f"vault.{config.domain}"
    private_ip = config.servers["application"].private_ip
    component = _component(stack_run)
    ca = stack_run.named("tls:index/selfSignedCert:SelfSignedCert", "application-vault-ca")
    assert ca.parent == component.urn
    assert ca.inputs["isCaCertificate"] is True
    assert sorted(ca.inputs["allowedUses"]) == ["cert_signing", "crl_signing"]
    request = stack_run.named("tls:index/certRequest:CertRequest", "application-vault-tls-request")
    assert request.inputs["dnsNames"] == [name]
    assert request.inputs["ipAddresses"] == [private_ip, "127.0.0.1"]
    certificate = stack_run.named("tls:index/locallySignedCert:LocallySignedCert", "application-vault-tls-certificate")
    assert certificate.inputs["caCertPem"] == ca.outputs["certPem"]
    assert "server_auth" in certificate.inputs["allowedUses"]
    assert 0 < certificate.inputs["earlyRenewalHours"] < certificate.inputs["validityPeriodHours"]
    keys = stack_run.of_type("tls:index/privateKey:PrivateKey")
    assert len(keys) == 2 and all("privateKeyPem" in k.additional_secret_outputs for k in keys)

    container = stack_run.named(CONTAINER, "application-vault")
    server_key = stack_run.named("tls:index/privateKey:PrivateKey", "application-vault-tls-key")
    assert is_secret(server_key.outputs["privateKeyPem"])
    key_pem = reveal(server_key.outputs["privateKeyPem"])
    assert key_pem not in "".join(plaintext_strings(container.inputs))  # a secret in state
    uploads = {u["file"]: u["content"] for u in reveal(container.inputs["uploads"])}
    assert uploads["/vault/tls/key.pem"] == key_pem
    assert uploads["/vault/tls/cert.pem"] == certificate.outputs["certPem"]
    assert uploads["/vault/tls/ca.pem"] == ca.outputs["certPem"]
    assert f"VAULT_TLS_SERVER_NAME={name}" in container.inputs["envs"]

    # Jenkins gets the CA as a stack output; the provider reads it from a file written where the program runs.
    assert stack_run.exports["vaultCaCertificate"] == ca.outputs["certPem"]
    assert stack_run.exports["vaultAddress"] == f"https://{private_ip}:8200"
    provider = stack_run.named("pulumi:providers:vault", "vault")
    assert provider.inputs["caCertFile"] == f".samarth/vault-ca-{stack_run.stack}.pem"
    assert not Path(provider.inputs["caCertFile"]).is_absolute()
    assert provider.inputs["tlsServerName"] == name
    # Nginx verifies Vault with the same CA and name.
    nginx = stack_run.named(CONTAINER, "nginx-container")
    assert {u["file"]: u["content"] for u in nginx.inputs["uploads"]}["/etc/nginx/samarth/vault-ca.pem"] == ca.outputs["certPem"]
    assert not stack_run.warnings


def test_the_provider_ca_file_is_written_where_the_program_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = program_rerun("staging")
    assert run.error is None
    provider = run.named("pulumi:providers:vault", "vault")
    written = tmp_path / provider.inputs["caCertFile"]
    assert written.read_text() == run.exports["vaultCaCertificate"]
    # Beside it only the stack's known_hosts directory: no staging file left.
    assert sorted(p.name for p in written.parent.iterdir()) == ["staging", "vault-ca-staging.pem"]
    assert all(p.suffix == ".known_hosts" for p in (written.parent / "staging").iterdir())


def test_plain_http_only_when_the_stack_says_so_and_the_plan_warns() -> None:
    run = program_run("prod", overrides={"vault": {"plainHttp": True}})
    assert run.error is None
    assert not run.of_type("tls:index/selfSignedCert:SelfSignedCert")
    container = run.named(CONTAINER, "application-vault").plain_inputs
    server = _hcl(container["uploads"][0]["content"])
    assert all(listener["tcp"]["tls_disable"] is True for listener in server["listener"])
    assert container["envs"] == ["VAULT_ADDR=http://127.0.0.1:8200"]
    assert run.exports["vaultAddress"] == "http://10.20.0.10:8200" and "vaultCaCertificate" not in run.exports
    provider = run.named("pulumi:providers:vault", "vault")
    assert "caCertFile" not in provider.inputs and "tlsServerName" not in provider.inputs
    (warning,) = run.warnings
    assert "vault.plainHttp is true" in warning and "unencrypted" in warning
    from tools.plan import place, render_plan

    plan = render_plan(place(run, _stack_config("prod").model_copy(update={"vault": _stack_config("prod").vault.model_copy(update={"plain_http": True})})))
    assert "warning: vault.plainHttp is true" in plan


def test_openbao_runs_bao_without_ipc_lock_and_vault_mlock_can_be_turned_on() -> None:
    versions = {**json.loads(_versions("prod")), "vault": "openbao/openbao:2.4.3"}
    run = program_run("prod", overrides={"versions": versions, "vault": {"distribution": "openbao"}})
    assert run.error is None
    container = run.named(CONTAINER, "application-vault").plain_inputs
    assert container["command"] == ["bao", "server", "-config=/openbao/config/samarth.hcl"]
    assert "capabilities" not in container
    assert "BAO_ADDR=https://127.0.0.1:8200" in container["envs"] and "BAO_CACERT=/openbao/tls/ca.pem" in container["envs"]
    assert "BINARY=bao" in run.named(COMMAND, "application-vault-init").inputs["create"].splitlines()
    # OpenBao takes its audit device from the server config only.
    assert not run.of_type("vault:index/audit:Audit")
    server = _hcl(container["uploads"][0]["content"])
    assert server["audit"] == [{"file": {"file": {"options": [{"file_path": "/openbao/logs/audit.log"}]}}}]

    run = program_run("prod", overrides={"vault": {"mlock": True}})
    server = _hcl(run.named(CONTAINER, "application-vault").plain_inputs["uploads"][0]["content"])
    assert server["disable_mlock"] is False


def test_a_credential_added_after_publishing_is_an_error_not_lost() -> None:
    book = CredentialBook()
    book.add("yaus", {"DB_PASSWORD": "x"})
    book.add("backups", {"DB1_RESTIC_PASSWORD": "z"}, area=PLATFORM)
    assert book.close() == {"platform/backups": {"DB1_RESTIC_PASSWORD": "z"}, "samarth/yaus": {"DB_PASSWORD": "x"}}
    with pytest.raises(RuntimeError, match="kv/samarth/templater: DB_URL added after the credentials were handed to Vault"):
        book.add("templater", {"DB_URL": "y"})


def test_children_are_named_from_the_components_name() -> None:
    """"vault" in __main__.py gives the URNs pinned in tests/support/urns/; another name gives other names."""
    registrations = _publish_under_mocks({"yaus": {"DB_PASSWORD": "x"}}, name="vault-b")
    component = next(r for r in registrations if r.type == "samarth:vault:VaultServer")
    children = [r for r in registrations if r.parent == component.urn]
    assert children
    assert all(r.name.startswith(("vault-b", "application-vault-b")) for r in children), [r.name for r in children]
