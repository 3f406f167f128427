"""The off-site repository from config (backups.offsite), under Pulumi's mocks: its mistakes fail before
any resource with the key path; an S3 one's secret key is secret config and reaches the hosts only on
stdin and Vault; an SFTP one gives every server a key of its own and pins the host's key."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.config import ConfigError, load_stack_config, validate
from components.deployment import load_deployment
from components.services.backups import component as backups
from tests.support.argv_check import secret_atoms, text_leaks
from tests.support.program_runs import program_run
from tools.offline import PROJECT, TEST_SECRETS, ProgramRun, is_secret, read_stack_values, reveal, stack_file

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqU0wtU2mDgqw8BrjS2ycO9CskOQnh9cmqY2W5lI1pj offsite"
S3 = {"repository": "s3:https://s3.eu-central-1.example.net/samarth-offsite/prod", "accessKeyId": "AKIAOFFSITE0EXAMPLE"}
SFTP = {"repository": "sftp:samarth@offsite.example.net:/srv/offsite", "hostKey": HOST_KEY, "sshPort": 2222}
SECRET_ACCESS_KEY = "offsiteSecretAccessKey0123456789abcdefXYZ"
SERVERS = ("db1", "db2", "application", "swarm-master")


def _raw() -> dict[str, Any]:
    values, _ = read_stack_values(stack_file("prod"))
    return {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in values.items()}


def _with_offsite(offsite: dict[str, Any]) -> dict[str, Any]:
    raw = _raw()
    raw["backups"] = {**raw["backups"], "offsite": offsite}
    return raw


@pytest.mark.parametrize(
    "offsite, expected",
    [
        ({"repository": "s3://bucket"}, r"backups\.offsite\.repository: 's3://bucket' is not an off-site repository"),
        ({"repository": "b2:bucket:path", "accessKeyId": "x"}, r"backups\.offsite\.repository: .* is not an off-site repository"),
        ({**S3, "repository": "s3:http://s3.example.net/bucket"}, r"backups\.offsite\.repository: .*plain http only to a private address"),
        ({**SFTP, "repository": "sftp:samarth@offsite.example.net:relative/path"}, r"backups\.offsite\.repository: .* is not an off-site"),
        ({**SFTP, "repository": "sftp:samarth@offsite.example.net:/srv/../etc"}, r"backups\.offsite\.repository: .*'\.\.'"),
        ({"repository": S3["repository"]}, r"backups\.offsite: accessKeyId: required for an S3 repository"),
        ({**S3, "hostKey": HOST_KEY}, r"backups\.offsite: hostKey and sshPort are for an SFTP repository"),
        ({"repository": SFTP["repository"]}, r"backups\.offsite: hostKey: required for an SFTP repository"),
        ({**SFTP, "accessKeyId": "AKIA"}, r"backups\.offsite: accessKeyId and region are for an S3 repository"),
        ({**SFTP, "hostKey": "ssh-ed25519 notbase64!"}, r"backups\.offsite\.hostKey: the ssh-ed25519 key is not valid base64"),
        ({**S3, "retention": {"hourly": 12, "daily": 30, "weekly": 8}}, r"backups: offsite\.retention\.hourly: 12 keeps fewer than backups\.retention\.hourly \(24\)"),
        ({**S3, "typo": 1}, r"backups\.offsite\.typo: unknown key"),
    ],
)
def test_offsite_mistakes_name_the_key(offsite: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        validate(_with_offsite(offsite))


def test_an_offsite_repository_needs_rclone_pinned() -> None:
    raw = _with_offsite(S3)
    del raw["versions"]["rclone"]
    with pytest.raises(ConfigError, match=r"versions\.rclone: required with backups\.offsite"):
        validate(raw)
    raw["versions"]["rclone"] = "rclone/rclone:latest"
    with pytest.raises(ConfigError, match=r"versions\.rclone: .*moving tag 'latest'"):
        validate(raw)


def _values(raw: dict[str, Any], **secrets: str) -> tuple[dict[str, str], set[str]]:
    values = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    values |= {f"{PROJECT}:{k}": v for k, v in secrets.items()}
    return values, {f"{PROJECT}:{k}" for k in secrets}


def test_the_s3_secret_key_is_secret_config_required_only_with_an_s3_offsite() -> None:
    values, secrets = _values(_with_offsite(S3), sshPrivateKey=TEST_SECRETS["sshPrivateKey"])
    with pytest.raises(ConfigError, match=r"backupsOffsiteSecretAccessKey: required for the S3 repository in backups\.offsite"):
        load_deployment(PROJECT, "prod", values, secrets)
    values[f"{PROJECT}:backupsOffsiteSecretAccessKey"] = SECRET_ACCESS_KEY
    with pytest.raises(ConfigError, match=r"backupsOffsiteSecretAccessKey: stored in plaintext") as refused:
        load_deployment(PROJECT, "prod", values, secrets)
    assert SECRET_ACCESS_KEY not in str(refused.value)
    loaded = load_deployment(PROJECT, "prod", values, secrets | {f"{PROJECT}:backupsOffsiteSecretAccessKey"})
    assert loaded.offsite_secret_access_key == SECRET_ACCESS_KEY
    values, secrets = _values(_with_offsite(SFTP), sshPrivateKey="k", backupsOffsiteSecretAccessKey=SECRET_ACCESS_KEY)
    with pytest.raises(ConfigError, match=r"backupsOffsiteSecretAccessKey: set, but backups\.offsite is not an enabled S3 repository"):
        load_deployment(PROJECT, "prod", values, secrets)


def test_rclone_settings_name_the_same_place_as_the_restic_url() -> None:
    config = validate(_with_offsite(S3))
    assert config.backups.offsite is not None
    s3 = backups.offsite_settings(config.backups.offsite, "db2")
    assert s3["SAMARTH_OFFSITE_REPOSITORY"] == "rclone:samarthoffsite:samarth-offsite/prod/db2"
    assert s3["RCLONE_CONFIG_SAMARTHOFFSITE_ENDPOINT"] == "https://s3.eu-central-1.example.net"
    assert s3["RCLONE_CONFIG_SAMARTHOFFSITE_ENV_AUTH"] == "false"
    assert s3["RCLONE_CONFIG"] == "/dev/null"
    assert backups.offsite_repository(config.backups.offsite, "db2") == f"{S3['repository']}/db2"
    config = validate(_with_offsite(SFTP))
    assert config.backups.offsite is not None
    sftp = backups.offsite_settings(config.backups.offsite, "db1")
    assert sftp["SAMARTH_OFFSITE_REPOSITORY"] == "rclone:samarthoffsite:/srv/offsite/db1"
    assert (sftp["RCLONE_CONFIG_SAMARTHOFFSITE_HOST"], sftp["RCLONE_CONFIG_SAMARTHOFFSITE_USER"], sftp["RCLONE_CONFIG_SAMARTHOFFSITE_PORT"]) == ("offsite.example.net", "samarth", "2222")
    assert backups.offsite_known_hosts(config.backups.offsite) == "[offsite.example.net]:2222 " + " ".join(HOST_KEY.split()[:2])


def s3_offsite_run() -> ProgramRun:
    """Prod with an S3 off-site repository, its secret key as secret config."""
    run = program_run(
        "prod",
        overrides={"backups": _with_offsite(S3)["backups"]},
        secrets={**TEST_SECRETS, "backupsOffsiteSecretAccessKey": SECRET_ACCESS_KEY},
    )
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def s3_run() -> ProgramRun:
    return s3_offsite_run()


@pytest.fixture(scope="module")
def sftp_run() -> ProgramRun:
    run = program_run("prod", overrides={"backups": _with_offsite(SFTP)["backups"]})
    assert run.error is None, run.error
    return run


def _installs(run: ProgramRun) -> dict[str, Any]:
    return {s: run.named("command:remote:Command", f"backups-{s}-install") for s in SERVERS}


def test_s3_offsite_credentials_reach_hosts_on_stdin_and_vault_only(s3_run: ProgramRun) -> None:
    passwords = {r.name: reveal(r.outputs["result"]) for r in s3_run.of_type("random:index/randomPassword:RandomPassword")}
    for server, install in _installs(s3_run).items():
        stdin = reveal(install.inputs["stdin"])
        assert is_secret(install.inputs["stdin"])
        offsite_password = passwords[f"backups-{server}-offsite-password"]
        assert offsite_password != passwords[f"backups-{server}-repository-password"]
        assert f"offsite_password={offsite_password}\n" in stdin
        assert f"RCLONE_CONFIG_SAMARTHOFFSITE_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}\n" in stdin
        assert f"SAMARTH_OFFSITE_REPOSITORY=rclone:samarthoffsite:samarth-offsite/prod/{server}\n" in stdin
        create = reveal(install.inputs["create"])
        assert "RCLONE_IMAGE=rclone/rclone:1.75.0" in create
        for secret in (SECRET_ACCESS_KEY, offsite_password):
            assert secret not in json.dumps(reveal(install.inputs["create"]))
        atoms = secret_atoms([SECRET_ACCESS_KEY, offsite_password])
        # And not inside any other text of its script (on any command line: tests/tools/test_no_secret_in_argv.py).
        assert not text_leaks(install.name, create, atoms)
    book = s3_run.named("vault:kv/secretV2:SecretV2", "vault-kv-platform-backups")
    published = json.loads(reveal(book.inputs["dataJson"]))
    assert published["OFFSITE_AWS_ACCESS_KEY_ID"] == S3["accessKeyId"]
    assert published["OFFSITE_AWS_SECRET_ACCESS_KEY"] == SECRET_ACCESS_KEY
    assert published["DB2_OFFSITE_RESTIC_REPOSITORY"] == f"{S3['repository']}/db2"
    assert published["APPLICATION_OFFSITE_RESTIC_PASSWORD"] == passwords["backups-application-offsite-password"]
    assert is_secret(book.inputs["dataJson"])
    # No SSH keys for an S3 off-site: only the application server's, for its own SFTP repository.
    keys = {r.name for r in s3_run.of_type("command:remote:Command") if r.name.endswith("-ssh-key")}
    assert keys == {"backups-application-ssh-key"}
    assert "backupOffsiteKeys" not in s3_run.exports


def test_sftp_offsite_gives_each_server_its_own_key_and_pins_the_host(sftp_run: ProgramRun) -> None:
    keys = {r.name for r in sftp_run.of_type("command:remote:Command") if r.name.endswith("-ssh-key")}
    assert keys == {f"backups-{s}-ssh-key" for s in SERVERS}
    exported = sftp_run.exports["backupOffsiteKeys"]
    assert set(exported) == set(SERVERS)
    assert all(key.startswith("ssh-ed25519 ") and key.endswith(f"samarth-backup@{s}") for s, key in exported.items())
    for install in _installs(sftp_run).values():
        stdin = reveal(install.inputs["stdin"])
        assert f"offsite_known_hosts=[offsite.example.net]:2222 {' '.join(HOST_KEY.split()[:2])}\n" in stdin
        assert "RCLONE_CONFIG_SAMARTHOFFSITE_KNOWN_HOSTS_FILE=/etc/samarth/backups/offsite_known_hosts\n" in stdin
        assert "SECRET_ACCESS_KEY" not in stdin.replace("AWS_SECRET_ACCESS_KEY", "")
    # The application server's one key serves its SFTP repository and the off-site one.
    account = reveal(sftp_run.named("command:remote:Command", "backups-application-sftp-repository").inputs["create"])
    assert exported["application"] in account


def test_without_offsite_nothing_of_it_is_installed(prod: ProgramRun) -> None:
    for install in _installs(prod).values():
        assert "RCLONE_IMAGE=''" in reveal(install.inputs["create"])
        assert "offsite" not in reveal(install.inputs["stdin"]).lower()
    assert not [r for r in prod.of_type("random:index/randomPassword:RandomPassword") if "offsite" in r.name]


def test_the_staging_and_prod_stacks_load_with_the_offsite_declaration() -> None:
    # The example in the docs, as a stack would write it, loads (the same text the engine passes).
    raw = copy.deepcopy(_with_offsite(SFTP))
    values = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    config = load_stack_config(PROJECT, values)
    assert config.backups.offsite is not None and config.backups.offsite.kind == "sftp"
    assert config.backups.offsite_retention() == config.backups.retention


def test_the_plan_shows_the_offsite_target_and_capacity_leaves_it_out() -> None:
    from components.assembly import stack_placements
    from tools.plan import backup_plan

    config = validate(_with_offsite(S3))
    lines = "\n".join(backup_plan(config))
    assert f"off-site copy after each run: {S3['repository']}/db2" in lines
    without = validate(_raw())
    assert list(stack_placements(config)) == list(stack_placements(without))


@pytest.mark.parametrize(
    "offsite, server",
    [
        ({**SFTP, "repository": "sftp:samarth@10.20.0.21:/srv/offsite"}, "db1"),
        ({**S3, "repository": "s3:https://203.0.113.10/samarth-offsite"}, "application"),
    ],
)
def test_an_offsite_repository_on_one_of_the_six_servers_is_refused(offsite: dict[str, Any], server: str) -> None:
    with pytest.raises(ConfigError, match=rf"backups\.offsite\.repository: .* is servers\.{server}; an off-site repository must be outside the six servers"):
        validate(_with_offsite(offsite))
