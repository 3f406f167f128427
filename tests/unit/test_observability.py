"""Sentry and PostHog under mocks: pinned, unattended, guarded by version, secrets out of plaintext."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pulumi
import pytest

from components.assembly import not_backed_up
from components.config import ConfigError, load_stack_config
from components.platform.host.component import BuildInputs, Host, HostArgs
from components.services.observability.component import build as build_observability
from components.services.observability.component import sentry_release
from components.shared.publishing import CredentialBook
from tests.support.compose_model import POSTHOG_DEPLOY, posthog_compose
from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools.offline import (
    PROJECT,
    Mocks,
    ProgramRun,
    RecordingMonitor,
    is_secret,
    plaintext_strings,
    read_stack_values,
    reveal,
    stack_deployment,
    stack_file,
)

KAFKA_IMAGE = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams" / "apache-kafka-3.9.1"
COMMAND = "command:remote:Command"
SENTRY = "observability-sentry-install"
POSTHOG = "observability-posthog-install"


def _stack(stack: str, key: str) -> dict:
    values, _ = read_stack_values(stack_file(stack))
    return json.loads(values[f"{PROJECT}:{key}"])


def test_sentry_installs_the_pinned_tag_unattended(stack_run: ProgramRun) -> None:
    tag = _stack(stack_run.stack, "versions")["sentry"]
    sentry = stack_run.named(COMMAND, SENTRY)
    create = sentry.plain_inputs["create"]
    values = script_values(create)
    assert (values["REF"], values["VERIFY"]) == (tag, f"refs/tags/{tag}^{{commit}}")
    assert 'checkout --quiet --force "$REF"\n' in create
    assert "./install.sh --skip-user-creation --no-report-self-hosted-issues </dev/null" in create
    assert values["ADMIN_EMAIL"] == "devops@samarth.example.org"
    assert 'createuser --email "$ADMIN_EMAIL" --superuser --force-update' in create
    # Without --no-input: the password answers createuser's prompt on stdin.
    assert "--no-input" not in create and " --password " not in create
    private_ip = _stack(stack_run.stack, "servers")["application"]["privateIp"]
    port = _stack(stack_run.stack, "observability")["sentry"]["port"]
    assert f"SENTRY_BIND={private_ip}:{port}" in values["SETTINGS"].splitlines()


def test_posthog_installs_the_pinned_commit_with_its_web_port_private(stack_run: ProgramRun) -> None:
    commit = _stack(stack_run.stack, "versions")["posthog"]
    posthog = stack_run.named(COMMAND, POSTHOG).plain_inputs["create"]
    values = script_values(posthog)
    assert values["REF"] == commit and 'checkout --quiet --force "$REF"\n' in posthog
    private_ip = _stack(stack_run.stack, "servers")["application"]["privateIp"]
    assert f'- "{private_ip}:8023:8000"' in values["OVERRIDE"]
    host = _stack(stack_run.stack, "observability")["posthog"]["hostName"]
    assert f"SITE_URL=https://{host}" in values["SETTINGS"].splitlines()


def _posthog_install(run: ProgramRun) -> tuple[str, dict[str, str], dict]:
    """The PostHog install script, its header values, and posthog-deploy's compose file at the pinned
    commit (fixture) merged with the override the script writes."""
    create = run.named(COMMAND, POSTHOG).plain_inputs["create"]
    values = script_values(create)
    return create, values, posthog_compose(values["OVERRIDE"])


def test_posthog_web_runs_docker_server_from_a_copy_installed_executable(stack_run: ProgramRun) -> None:
    create, values, compose = _posthog_install(stack_run)
    # At the pinned commit git has docker-server as 100644, and web's /compose/start runs it directly.
    modes = dict(line.split("\t")[::-1] for line in (POSTHOG_DEPLOY / "ls-tree.txt").read_text().splitlines())
    assert modes["docker-server"].startswith("100644 ") and modes["compose/start"].startswith("100755 ")
    assert "./bin/docker-server\n" in (POSTHOG_DEPLOY / "compose-start").read_text().splitlines(keepends=True)
    web = compose["services"]["web"]
    assert web["command"] == "/compose/start"
    mounts = {volume.split(":")[1]: volume for volume in web["volumes"]}
    # Not the tracked file: the install's copy, made executable by `install -m 0755` on every install.
    assert mounts["/code/bin/docker-server"] == f"./{values['SERVER_SCRIPT']}:/code/bin/docker-server:ro"
    assert values["SERVER_SCRIPT"] != "docker-server"
    assert 'install -m 0755 docker-server "$SERVER_SCRIPT"\n' in create
    assert not [v for v in web["volumes"] if v.startswith("./docker-server:")]


def test_posthog_install_waits_for_health_with_a_timeout_and_never_starts_a_one_shot(stack_run: ProgramRun) -> None:
    create, values, compose = _posthog_install(stack_run)
    assert 'dc up --detach --remove-orphans --wait --wait-timeout "$WAIT_SECONDS" $SERVICES \\\n' in create
    assert "|| posthog_not_ready " in create
    assert 0 < int(values["WAIT_SECONDS"]) <= 1800
    # The restart watch's window outlasts Docker's longest wait between two restarts (a minute,
    # moby restartmanager), so a crash-looping container restarts within every window.
    assert 60 < int(values["SETTLE_SECONDS"]) <= 120 and int(values["SETTLE_WINDOWS"]) >= 2
    # posthog-deploy marks a one-shot with `restart: 'no'` and `scale: 0`; `up --wait` fails when a
    # container exits, so the install names exactly the long-running services.
    services = compose["services"]
    one_shots = [name for name, s in services.items() if s.get("restart") == "no" or s.get("scale") == 0]
    assert one_shots == ["asyncmigrationscheck"] == values["ONE_SHOTS"].split()
    assert values["SERVICES"].split() == [name for name in services if name not in one_shots]
    # web is healthy once gunicorn accepts connections (docker-server binds 0.0.0.0:8000); its grace
    # period is the wait itself, so a crash loop fails at the timeout rather than passing as "running".
    assert "--bind 0.0.0.0:8000" in (POSTHOG_DEPLOY / "docker-server").read_text()
    health = services["web"]["healthcheck"]
    assert "create_connection(('127.0.0.1', 8000)" in " ".join(health["test"])
    assert health["start_period"] == f"{values['WAIT_SECONDS']}s"


def test_posthog_kafka_keeps_its_log_on_a_named_external_volume(stack_run: ProgramRun) -> None:
    create, values, compose = _posthog_install(stack_run)
    kafka = compose["services"]["kafka"]
    # apache/kafka's image makes /var/lib/kafka/data its user's (appuser) and a VOLUME; without
    # KAFKA_LOG_DIRS, Kafka writes to its default log.dir, /tmp/kafka-logs, in the container.
    dockerfile = (KAFKA_IMAGE / "Dockerfile").read_text()
    assert "chown appuser:root -R /var/lib/kafka " in dockerfile and re.search(r"^USER appuser$", dockerfile, re.M)
    assert re.search(r'^VOLUME \[.*"/var/lib/kafka/data"', dockerfile, re.M)
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert f"{values['KAFKA_VOLUME']}:/var/lib/kafka/data" in kafka["volumes"]
    # Named and external: made by the install, kept by `docker compose down -v` and by the delete.
    assert compose["volumes"][values["KAFKA_VOLUME"]] == {"external": True}
    assert 'docker volume create "$KAFKA_VOLUME"' in create
    delete = stack_run.named(COMMAND, POSTHOG).plain_inputs["delete"]
    assert "down --remove-orphans" in delete and " -v" not in delete
    # In the backup model: not backed up, with the reason.
    assert values["KAFKA_VOLUME"] in not_backed_up(stack_deployment(stack_run.stack).config)["posthog"]


@pytest.mark.parametrize("name", [SENTRY, POSTHOG])
def test_install_commands_are_guarded_logged_off_and_keep_volumes(prod: ProgramRun, name: str) -> None:
    command = prod.named(COMMAND, name)
    inputs = command.plain_inputs
    assert inputs["update"] == inputs["create"]
    assert "triggers" not in inputs
    assert 'if [ "$installed" = "$wanted" ]; then' in inputs["create"]
    assert inputs["logging"] == "none"
    assert inputs["addPreviousOutputInEnv"] is False
    assert is_secret(command.inputs["stdin"])
    assert "dc down --remove-orphans" in inputs["delete"]
    assert " -v" not in inputs["delete"] and "--volumes" not in inputs["delete"]
    # After the preflight and the log defaults (a change restarts dockerd, which compose talks to).
    log_defaults = prod.named(COMMAND, "application-docker-log-defaults")
    assert log_defaults.urn in command.dependencies
    parent = prod.parent_of(command)
    assert parent is not None and parent.type == "samarth:observability:ComposeInstall"


def test_generated_secrets_never_reach_a_plaintext_input(prod: ProgramRun) -> None:
    generated = [
        reveal(r.outputs["result"])
        for r in prod.of_type("random:index/randomPassword:RandomPassword")
        if r.name.startswith("observability-")
    ]
    assert len(generated) == 4
    sentry_stdin = reveal(prod.named(COMMAND, SENTRY).inputs["stdin"])
    posthog_stdin = reveal(prod.named(COMMAND, POSTHOG).inputs["stdin"])
    assert sentry_stdin.splitlines() == [generated[0]]
    assert all(value in posthog_stdin for value in generated[1:])
    for registration in prod.registrations:
        for text in plaintext_strings(registration.inputs):
            for value in generated:
                assert value not in text, f"{registration.name} carries a generated secret in plaintext"


def _install_inputs(run: ProgramRun) -> dict[str, dict]:
    assert run.error is None, run.error
    return {name: run.named(COMMAND, name).plain_inputs for name in (SENTRY, POSTHOG)}


def test_commands_change_only_when_their_own_version_changes(prod: ProgramRun) -> None:
    baseline = _install_inputs(prod)
    versions = _stack("prod", "versions")

    unrelated = program_run("prod", overrides={"versions": {**versions, "postgres": "postgres:16.11"}})
    assert _install_inputs(unrelated) == baseline

    upgraded = _install_inputs(program_run("prod", overrides={"versions": {**versions, "sentry": "25.11.0"}}))
    assert upgraded[POSTHOG] == baseline[POSTHOG]
    assert upgraded[SENTRY]["create"] != baseline[SENTRY]["create"]
    assert script_values(upgraded[SENTRY]["create"])["REF"] == "25.11.0"
    assert upgraded[SENTRY]["delete"] == baseline[SENTRY]["delete"]


def test_the_marker_fingerprints_versions_and_settings_not_the_script_text(prod: ProgramRun) -> None:
    """A server whose marker matches does nothing, so a reworded install script must not change the
    marker; a changed setting or release must."""
    desired = script_values(prod.named(COMMAND, SENTRY).plain_inputs["create"])["DESIRED"]
    ref, fingerprint = desired.split()
    settings = load_stack_config(PROJECT, read_stack_values(stack_file("prod"))[0]).observability.sentry
    release = sentry_release(settings, ref, _stack("prod", "servers")["application"]["privateIp"])
    assert release.fingerprint() == fingerprint
    assert dataclasses.replace(release, install_file="posthog-install.sh").fingerprint() == fingerprint
    assert dataclasses.replace(release, settings={**release.settings, "SENTRY_BIND": "10.0.0.1:1"}).fingerprint() != fingerprint
    assert dataclasses.replace(release, install_values={**release.install_values, "ADMIN_EMAIL": "x@y.z"}).fingerprint() != fingerprint


def test_an_8_gib_application_server_fails_before_any_registration() -> None:
    servers = _stack("prod", "servers")
    servers["application"] = {**servers["application"], "memoryMib": 8192}
    run = program_run("prod", overrides={"servers": servers})
    assert isinstance(run.error, ConfigError)
    assert run.registrations == []
    message = str(run.error)
    assert "servers.application.memoryMib: 8192 MiB" in message
    assert "Sentry (self-hosted installer minimum) (14000 MiB)" in message
    assert "PostHog (posthog-deploy hobby stack) (8192 MiB)" in message


def test_too_few_cpus_for_the_sentry_installer_fails_early() -> None:
    servers = _stack("prod", "servers")
    servers["application"] = {**servers["application"], "cpus": 2}
    run = program_run("prod", overrides={"servers": servers})
    assert run.registrations == []
    assert "servers.application.cpus: Sentry (self-hosted installer minimum) needs at least 4 CPUs, 2 declared" in str(run.error)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda o: o.pop("posthog"), "observability.posthog: required key is missing"),
        (lambda o: o["sentry"].update(adminEmail="devops"), "observability.sentry.adminEmail: 'devops' is not an email address"),
        (lambda o: o["posthog"].update(directory="opt/posthog"), "observability.posthog.directory: 'opt/posthog' is not an absolute"),
        (lambda o: o["posthog"].update(port=9001), "posthog.port: 9001 is already sentry.port"),
        (lambda o: o["sentry"].update(hostNmae="x"), "observability.sentry.hostNmae: unknown key"),
        (lambda o: o["posthog"].update(enabled="maybe"), "observability.posthog.enabled: Input should be a valid boolean"),
    ],
)
def test_bad_observability_config_fails_naming_the_key(change, expected: str) -> None:
    observability = _stack("prod", "observability")
    change(observability)
    run = program_run("prod", overrides={"observability": observability})
    assert isinstance(run.error, ConfigError)
    assert run.registrations == []
    assert expected in str(run.error)


def test_a_branch_as_sentry_version_is_refused() -> None:
    run = program_run("prod", overrides={"versions": {**_stack("prod", "versions"), "sentry": "master"}})
    assert run.registrations == []
    assert "versions.sentry: 'master' is not a pinned release" in str(run.error)


def test_credentials_go_to_the_book_as_the_secrets_the_installs_use() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    config = load_stack_config(PROJECT, values)
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="prod", preview=False, monitor=RecordingMonitor(mocks))
    seen: dict = {}

    @pulumi.runtime.test
    def build() -> pulumi.Output:
        book = CredentialBook()
        host = Host("application", HostArgs(server=config.servers["application"], access=config.access))
        component = build_observability(BuildInputs(config, {"application": host}, book))
        services = book.services()
        seen["keys"] = {service: sorted(entries) for service, entries in services.items()}
        password = services["platform/sentry"]["SENTRY_ADMIN_PASSWORD"]
        assert component.sentry is not None
        stdin = component.sentry.command.stdin
        return pulumi.Output.all(password, stdin).apply(lambda values: seen.update(values=values))

    build()
    # Where each is served, for the applications; the admin accounts and internal secrets for operators only.
    assert seen["keys"] == {
        "platform/posthog": [
            "POSTHOG_MINIO_ROOT_PASSWORD",
            "POSTHOG_MINIO_ROOT_USER",
            "POSTHOG_POSTGRES_PASSWORD",
            "POSTHOG_SECRET_KEY",
        ],
        "platform/sentry": ["SENTRY_ADMIN_EMAIL", "SENTRY_ADMIN_PASSWORD"],
        "samarth/posthog": ["POSTHOG_URL"],
        "samarth/sentry": ["SENTRY_URL"],
    }
    password, stdin = seen["values"]
    assert stdin == f"{password}\n"


# --- enabled: false ------------------------------------------------------------------------------

def _signature(run: ProgramRun) -> dict[tuple[str, str], str]:
    """Each registration's inputs, revealed, by (type, name); the unseal trigger's timestamp left out."""
    assert run.error is None, run.error
    signature = {}
    for r in run.registrations:
        inputs = r.plain_inputs
        if r.name == "application-vault-unseal":
            inputs = {**inputs, "triggers": inputs["triggers"][:-1]}
        signature[r.type, r.name] = json.dumps(inputs, sort_keys=True)
    return signature


def _with(**enabled: bool) -> dict:
    observability = _stack("prod", "observability")
    for name, value in enabled.items():
        observability[name]["enabled"] = value
    return observability


def test_enabled_true_is_the_default(prod: ProgramRun) -> None:
    explicit = program_run("prod", overrides={"observability": _with(sentry=True, posthog=True)})
    assert _signature(explicit) == _signature(prod)


@pytest.mark.parametrize(("name", "other"), [("sentry", "posthog"), ("posthog", "sentry")])
def test_a_disabled_service_leaves_no_install_credentials_or_route(prod: ProgramRun, name: str, other: str) -> None:
    run = program_run("prod", overrides={"observability": _with(**{name: False})})
    assert run.error is None, run.error
    assert [r.name for r in run.registrations if name in r.name] == []
    published = {r.plain_inputs["name"] for r in run.of_type("vault:kv/secretV2:SecretV2")}
    assert not {f"samarth/{name}", f"platform/{name}"} & published
    assert {f"samarth/{other}", f"platform/{other}"} <= published
    settings = _stack("prod", "observability")
    nginx = run.named(COMMAND, "nginx-reload").plain_inputs["stdin"]
    assert settings[name]["hostName"] not in nginx and f":{settings[name]['port']};" not in nginx
    assert f"server_name {settings[other]['hostName']};" in nginx
    # No certificate for the name any more.
    assert settings[name]["hostName"] not in run.named(COMMAND, "nginx-certificates-install").plain_inputs["create"]
    # Everything else is registered exactly as with both enabled; only Nginx's config (and its digest),
    # the list of names with certificates, the application server's firewall (one port fewer) and
    # Jenkins' policy (one path fewer) differ.
    before = {key: value for key, value in _signature(prod).items() if name not in key[1]}
    after = _signature(run)
    changed = {key for key in before if before[key] != after.get(key)}
    assert changed == {
        (COMMAND, "nginx-reload"),
        (COMMAND, "nginx-certificates-install"),
        (COMMAND, "nginx-certificates-renew"),
        # Its triggers hold the config's digest, as every certificate step's do.
        (COMMAND, "nginx-certificate-registry.samarth.example.org"),
        (COMMAND, "firewall-application"),
        ("vault:index/policy:Policy", "vault-policy-jenkins"),
    }
    assert f"kv/data/samarth/{name}" not in after[("vault:index/policy:Policy", "vault-policy-jenkins")]
    assert set(after) == set(before)


def test_a_disabled_sentry_needs_no_room_on_the_application_server() -> None:
    servers = _stack("prod", "servers")
    servers["application"] = {**servers["application"], "cpus": 2, "memoryMib": 14336}
    run = program_run("prod", overrides={"servers": servers, "observability": _with(sentry=False)})
    assert run.error is None, run.error
    assert run.named(COMMAND, POSTHOG)


def test_a_route_to_a_disabled_service_is_refused_before_any_registration() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    edge = _stack("prod", "edge")
    edge["routes"].append({"host": f"errors.{values[PROJECT + ':domain']}", "upstream": "sentry"})
    index = len(edge["routes"]) - 1
    run = program_run("prod", overrides={"edge": edge, "observability": _with(sentry=False)})
    assert isinstance(run.error, ConfigError)
    assert run.registrations == []
    assert f"edge.routes[{index}].upstream: 'sentry' is not installed (observability.sentry.enabled is false)" in str(run.error)
