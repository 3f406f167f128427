"""The Docker Hub mirror: its config, what it renders, every server's daemon.json pointing at it, the
firewall opening from the six servers, the Docker Hub pulls waiting for it (and the others not), and the
plan's list of every pull with its source and the bootstrap order."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import ConfigError
from components.services.mirror.settings import PORT
from components.services.observability.settings import SENTRY_IMAGES
from components.shared.model import DOCKER_HUB as HUB
from components.shared.model import SERVER_NAMES, image_registry
from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools import plan
from tools.offline import (
    COMMAND,
    CONTAINER,
    IMAGE,
    TEST_SECRETS,
    ProgramRun,
    plaintext_strings,
    reveal,
    stack_deployment,
)

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams"
TOKEN = "dckr_pat_offline-test-token-not-real"


def _log_defaults(run: ProgramRun) -> dict[str, str]:
    return {
        r.name.removesuffix("-docker-log-defaults"): r.plain_inputs["create"]
        for r in run.of_type(COMMAND)
        if r.name.endswith("-docker-log-defaults")
    }


def test_every_servers_daemon_json_lists_the_mirror(prod: ProgramRun) -> None:
    scripts = _log_defaults(prod)
    assert sorted(scripts) == sorted(SERVER_NAMES)
    for server, script in scripts.items():
        assert json.loads(script_values(script)["REGISTRY_MIRRORS"]) == [f"http://10.20.0.10:{PORT}"], server
    disabled = program_run("prod", overrides={"mirror": {"enabled": False}})
    assert disabled.error is None, disabled.error
    for script in _log_defaults(disabled).values():
        assert json.loads(script_values(script)["REGISTRY_MIRRORS"]) == []


def test_the_mirror_is_private_and_opened_to_the_six_servers_only(prod: ProgramRun) -> None:
    (container,) = [r for r in prod.of_type(CONTAINER) if r.plain_inputs.get("name") == "hub-mirror"]
    ports = container.plain_inputs["ports"]
    assert [(p["ip"], p["external"], p["internal"]) for p in ports] == [("10.20.0.10", PORT, 5000)]
    (row,) = [row for row in prod.exports["firewall"] if row["port"] == f"{PORT}/tcp"]
    assert row["server"] == "application" and row["chain"] == "DOCKER-USER"
    servers = stack_deployment("prod").config.servers
    assert row["from"] == {name: [f"{server.private_ip}/32"] for name, server in servers.items()}
    assert sorted(row["from"]) == sorted(SERVER_NAMES)


def _mirror_container(run: ProgramRun) -> str:
    (container,) = [r for r in run.of_type(CONTAINER) if r.plain_inputs.get("name") == "hub-mirror"]
    return container.urn


def test_docker_hub_pulls_wait_for_the_mirror_and_others_do_not(prod: ProgramRun) -> None:
    mirror = _mirror_container(prod)
    images = prod.of_type(IMAGE)
    assert len(images) > 10
    for image in images:
        ref = image.plain_inputs["name"]
        waits = mirror in image.dependencies
        if image.name == "hub-mirror-image":
            assert not waits  # its own image comes before it
        elif image_registry(ref) == HUB:
            assert waits, f"{image.name} ({ref}) pulls from Docker Hub without waiting for the mirror"
        else:
            assert not waits, f"{image.name} ({ref}) is not a Docker Hub image but waits for the mirror"
    # The scripts that pull Docker Hub images themselves wait for it too.
    for name in ("observability-sentry-install", "observability-posthog-install", "nginx-certificates-install"):
        (command,) = [r for r in prod.of_type(COMMAND) if r.name == name]
        assert mirror in command.dependencies, name


def test_the_hub_token_is_secret_config_never_in_plaintext() -> None:
    secrets = {**TEST_SECRETS, "dockerHubToken": TOKEN}
    run = program_run("prod", overrides={"mirror": {"hubUsername": "samarthci"}}, secrets=secrets)
    assert run.error is None, run.error
    (container,) = [r for r in run.of_type(CONTAINER) if r.plain_inputs.get("name") == "hub-mirror"]
    (upload,) = reveal(container.inputs["uploads"])
    assert yaml.safe_load(upload["content"])["proxy"]["password"] == TOKEN
    assert upload["permissions"] == "0400"
    for registration in run.registrations:
        assert not any(TOKEN in text for text in plaintext_strings(registration.inputs)), registration.name
        assert not any(TOKEN in text for text in plaintext_strings(registration.outputs)), registration.name
    assert TOKEN not in json.dumps(run.exports)


@pytest.mark.parametrize(
    ("mirror", "secrets", "message"),
    [
        ({"remoteUrl": "https://user:pass@registry-1.docker.io"}, {}, "mirror.remoteUrl: 'https://user:pass@registry-1.docker.io' carries credentials"),
        ({"remoteUrl": "https://registry-1.docker.io/v2/"}, {}, "mirror.remoteUrl: 'https://registry-1.docker.io/v2/' has a path"),
        ({"remoteUrl": "registry-1.docker.io"}, {}, "mirror.remoteUrl: 'registry-1.docker.io' is not an http(s) URL"),
        ({"remoteUrl": "ftp://mirror.example.org"}, {}, "is not an http(s) URL"),
        ({"hubUsername": "samarthci"}, {}, "dockerHubToken: required with mirror.hubUsername"),
        ({}, {"dockerHubToken": TOKEN}, "dockerHubToken: set, but mirror.hubUsername is not"),
        ({"enabled": False, "hubUsername": "samarthci"}, {"dockerHubToken": TOKEN}, "dockerHubToken: set, but mirror.hubUsername is not"),
        ({"hubUsername": "Samarth CI"}, {}, "mirror.hubUsername"),
        ({"ttl": "7d"}, {}, "mirror.ttl"),
    ],
)
def test_mirror_mistakes_are_refused_by_kind(mirror: dict[str, Any], secrets: dict[str, str], message: str) -> None:
    run = program_run("prod", overrides={"mirror": mirror}, secrets={**TEST_SECRETS, **secrets})
    assert isinstance(run.error, ConfigError), run.error
    assert message in str(run.error)
    assert TOKEN not in str(run.error)
    assert not [r for r in run.registrations if r.custom]


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        ({"mirror": None}, "versions.mirror: required because mirror.enabled is true"),
        ({"mirror": "nginx:1.30.4"}, "versions.mirror: 'nginx:1.30.4' is not distribution's registry"),
        ({"mirror": "registry:latest"}, "versions.mirror"),
    ],
)
def test_the_mirror_image_is_a_pinned_registry(versions: dict[str, Any], message: str) -> None:
    values = dict(stack_deployment("prod").config.versions.model_dump(by_alias=True, exclude_none=True))
    values.update({k: v for k, v in versions.items() if v is not None})
    for key in [k for k, v in versions.items() if v is None]:
        values.pop(key, None)
    run = program_run("prod", overrides={"versions": values})
    assert isinstance(run.error, ConfigError), run.error
    assert message in str(run.error)
    # Without the mirror, no pin is needed.
    values.pop("mirror", None)
    assert program_run("prod", overrides={"versions": values, "mirror": {"enabled": False}}).error is None


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("postgres:16.15", "docker.io"),
        ("goacme/lego:v4.35.2", "docker.io"),
        ("docker.io/library/busybox:1", "docker.io"),
        ("index.docker.io/library/busybox", "docker.io"),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "quay.io"),
        ("ghcr.io/getsentry/sentry:25.10.0", "ghcr.io"),
        ("localhost/samarth:1", "localhost"),
        ("10.20.0.10:5000/app:1", "10.20.0.10:5000"),
        ("registry:3.1.1@sha256:" + "a" * 64, "docker.io"),
    ],
)
def test_which_registry_an_image_comes_from(ref: str, registry: str) -> None:
    assert image_registry(ref) == registry


def test_sentrys_recorded_images_are_those_of_its_release() -> None:
    release = FIXTURES / "sentry-self-hosted-25.10.0"
    env = dict(line.split("=", 1) for line in (release / ".env").read_text().splitlines() if re.match(r"^[A-Z_]+_IMAGE=", line))
    compose = yaml.safe_load((release / "docker-compose.yml").read_text())
    built = {s["image"] for s in compose["services"].values() if "build" in s}
    wanted = set(env.values())
    for service in compose["services"].values():
        image = service.get("image")
        if image and image not in built:
            wanted.add(env.get(image.lstrip("$").strip("{}"), image) if image.startswith("$") else image)
        args = service.get("build", {}).get("args", {}) if isinstance(service.get("build"), dict) else {}
        if isinstance(args, list):  # KEY=VALUE, or KEY alone: taken from .env
            args = dict(a.split("=", 1) if "=" in a else (a, env.get(a, "")) for a in args)
        for base in args.values():
            base = env.get(base.lstrip("$").strip("{}"), base) if base.startswith("$") else base
            if base and base not in built:
                wanted.add(base)
    for script in ("check-minimum-requirements.sh", "wrap-up.sh"):
        wanted |= set(re.findall(r"run (?:-i )?--rm (?:--network=\S+ )?(?:-v \S+ )*(busybox|alpine)\b", (release / script).read_text()))
    assert set(SENTRY_IMAGES["25.10.0"]) == wanted


def test_the_plan_lists_every_pull_with_its_source_and_the_bootstrap_order() -> None:
    topology = plan.build("prod")
    text = plan.render_plan(topology)
    section = text[text.index("== Image pulls"):]
    section = section[: section.index("\n\n")]
    assert "2. from Docker Hub directly: registry:3.1.1 on application" in section
    assert "3. the mirror answers (container hub-mirror on application)" in section
    for image in topology.run.of_type(IMAGE):
        assert f"[RemoteImage {image.name}]" in section, image.name
    lines = {line.split("[")[-1].rstrip("]"): line for line in section.splitlines() if "[RemoteImage " in line}
    assert "quay.io, directly" in lines["RemoteImage minio-image"]
    assert "Docker Hub, through the mirror" in lines["RemoteImage db1-postgres-image"]
    assert "Docker Hub, directly: registered before the mirror answers" in lines["RemoteImage hub-mirror-image"]
    # The installers' pulls, which the Docker provider does not see.
    assert re.search(r"ghcr.io/getsentry/snuba:25.10.0 +ghcr.io, directly", section)
    assert re.search(r"posthog/posthog:release-1.40.0 +Docker Hub, through the mirror", section)
    assert re.search(r"goacme/lego:v4.35.2 +Docker Hub, through the mirror", section)
    assert "application: 30 images, 21 of them through the mirror" in section
