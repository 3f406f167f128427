"""Sentry behind the HTTPS proxy: the install's settings script runs on getsentry/self-hosted 25.10.0's own
example files (fixtures), the resulting sentry.conf.py is executed with Sentry's imports stubbed, and
config.yml is parsed. The installer's prerequisites are checked with stand-in docker and bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from components.services.observability.component import (
    SENTRY_MIN_BASH,
    SENTRY_MIN_COMPOSE,
    SENTRY_MIN_DOCKER,
    sentry_proxy_settings_script,
    sentry_release,
    sentry_requirements_script,
)
from components.services.observability.settings import SentrySettings
from lab.core import docker, ssh
from tests.support.lab_fixture import LabSession
from tests.support.nginx_probe import NGINX, temp_paths
from tests.support.nginx_probe import check as nginx_t

RELEASE = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams" / "sentry-self-hosted-25.10.0"
SETTINGS = SentrySettings.model_validate({"hostName": "sentry.samarth.example.org", "adminEmail": "devops@samarth.example.org"})
ORIGIN = "https://sentry.samarth.example.org"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files of a 25.10.0 checkout the script reads."""
    (tmp_path / "sentry").mkdir()
    shutil.copy(RELEASE / "config.example.yml", tmp_path / "sentry" / "config.example.yml")
    shutil.copy(RELEASE / "sentry.conf.example.py", tmp_path / "sentry" / "sentry.conf.example.py")
    shutil.copy(RELEASE / "nginx.conf", tmp_path / "nginx.conf")
    return tmp_path


def _run(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", sentry_proxy_settings_script(SETTINGS)], cwd=checkout, capture_output=True, text=True)


def execute_sentry_conf(path: Path) -> dict[str, object]:
    """Execute sentry.conf.py as Sentry would import it, with `sentry.conf.server` stubbed by what the
    file uses from it (SENTRY_OPTIONS, env, the feature set and the defaults it extends)."""
    server = types.ModuleType("sentry.conf.server")
    provided = {
        "SENTRY_OPTIONS": {},
        "SENTRY_FEATURES": {},
        "KAFKA_CLUSTERS": {},
        "env": lambda key, default="", type=None: os.environ.get(key, default),
    }
    for name, value in provided.items():
        setattr(server, name, value)
    server.__all__ = list(provided)  # type: ignore[attr-defined]
    stubs = {"sentry": types.ModuleType("sentry"), "sentry.conf": types.ModuleType("sentry.conf"), "sentry.conf.server": server}
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        namespace: dict[str, object] = {"__name__": "sentry_conf"}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return namespace


def test_rendered_settings_carry_the_https_origin_and_the_proxy_settings(checkout: Path) -> None:
    done = _run(checkout)
    assert done.returncode == 0, done.stderr
    settings = execute_sentry_conf(checkout / "sentry" / "sentry.conf.py")
    assert settings["CSRF_TRUSTED_ORIGINS"] == [ORIGIN]
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings["USE_X_FORWARDED_HOST"] is True
    assert settings["SESSION_COOKIE_SECURE"] is True and settings["CSRF_COOKIE_SECURE"] is True
    # The release's own settings are still there (the example was copied, not replaced).
    assert settings["SENTRY_SINGLE_ORGANIZATION"] is True
    config = yaml.safe_load((checkout / "sentry" / "config.yml").read_text())
    assert config["system.url-prefix"] == ORIGIN
    assert config["system.internal-url-prefix"] == "http://web:9000"


def test_settings_are_rewritten_not_repeated_and_the_operators_edits_kept(checkout: Path) -> None:
    assert _run(checkout).returncode == 0
    # What install.sh does next: generate the secret key in config.yml; an operator adds a setting.
    config = checkout / "sentry" / "config.yml"
    config.write_text(config.read_text().replace("system.secret-key: '!!changeme!!'", "system.secret-key: 'generated'"))
    conf = checkout / "sentry" / "sentry.conf.py"
    conf.write_text(conf.read_text() + "SENTRY_OPERATOR_SETTING = 1\n")
    for _ in range(2):
        assert _run(checkout).returncode == 0
    text = conf.read_text()
    assert text.count("\nCSRF_TRUSTED_ORIGINS = [") == 1 and text.count("# BEGIN samarth-infra") == 1
    assert execute_sentry_conf(conf)["SENTRY_OPERATOR_SETTING"] == 1
    parsed = yaml.safe_load(config.read_text())
    assert parsed["system.secret-key"] == "generated"
    assert [line for line in config.read_text().splitlines() if line.startswith("system.url-prefix:")] == [f"system.url-prefix: '{ORIGIN}'"]


def test_sentry_nginx_passes_the_forwarded_scheme_on(checkout: Path) -> None:
    upstream = (checkout / "nginx.conf").read_text()
    # At 25.10.0 Sentry's nginx overwrites the header with its own scheme (http behind our proxy).
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in upstream
    assert _run(checkout).returncode == 0
    patched = (checkout / "nginx.samarth.conf").read_text()
    assert "proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;" in patched
    assert "$scheme" not in patched
    assert patched.replace("$http_x_forwarded_proto;", "$scheme;") == upstream
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: apt-get install -y nginx (tools/test-packages.txt)")
    # The patched file is still a valid nginx configuration (upstream names resolved as placeholders, the
    # image's user dropped, what nginx writes moved under the checkout).
    probe = checkout / "probe.conf"
    probe.write_text(patched.replace("user nginx;", "").replace("server relay:3000;", "server 127.0.0.1:3000;")
                     .replace("server web:9000;", "server 127.0.0.1:9000;")
                     .replace("/var/run/nginx.pid", str(checkout / "nginx.pid")).replace("/var/log/nginx/", f"{checkout}/")
                     .replace("http {", f"http {{\n\t{temp_paths(checkout)}", 1)
                     .replace("include /etc/nginx/mime.types;", ""))
    tested = nginx_t(probe, checkout)
    assert tested.returncode == 0, tested.stderr


def test_a_release_whose_nginx_changed_is_refused(checkout: Path) -> None:
    nginx = checkout / "nginx.conf"
    nginx.write_text(nginx.read_text().replace("proxy_set_header X-Forwarded-Proto $scheme;", ""))
    done = _run(checkout)
    assert done.returncode != 0
    assert "nginx.conf has 0 lines" in done.stderr and "review how this release's nginx forwards the scheme" in done.stderr


def test_the_install_mounts_the_patched_nginx_conf_and_runs_the_settings_first() -> None:
    release = sentry_release(SETTINGS, "25.10.0", "10.20.0.10")
    override = yaml.safe_load(release.override or "")
    (mount,) = override["services"]["nginx"]["volumes"]
    assert mount == {"type": "bind", "read_only": True, "source": "./nginx.samarth.conf", "target": "/etc/nginx/nginx.conf"}
    script = release.install_script()
    # sentry-proxy-settings.sh's body, inlined where sentry-install.sh sources it, before the installer.
    assert script.index('step "writing system.url-prefix to sentry/config.yml"') < script.index("./install.sh")
    assert release.requirements == sentry_requirements_script()


def test_minimums_are_the_pinned_installers() -> None:
    text = (RELEASE / "_min-requirements.sh").read_text()
    assert f"MIN_DOCKER_VERSION='{SENTRY_MIN_DOCKER}'" in text
    assert f"MIN_COMPOSE_VERSION='{SENTRY_MIN_COMPOSE}'" in text
    assert f"MIN_BASH_VERSION='{SENTRY_MIN_BASH}'" in text


def _bin(tmp_path: Path, docker_version: str, compose_version: str | None) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    compose = f'echo "{compose_version}"' if compose_version else "exit 1"
    (directory / "docker").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo "{docker_version}"; exit 0; fi\n'
        f'if [ "$1" = compose ]; then {compose}; fi\n'
    )
    (directory / "docker").chmod(0o755)
    for tool in ("sh", "sed", "sort", "head", "grep", "uname", "printf", "bash", "cat"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, directory / tool)
    return directory


@pytest.mark.parametrize(
    "docker_version, compose_version, message",
    [
        ("28.5.1", "2.40.3", None),
        ("28.5.1", "v2.32.2", None),
        ("28.5.1", "2.24.5", "Docker Compose is 2.24.5; Sentry's installer needs 2.32.2 or newer"),
        ("28.5.1", None, "the docker compose plugin is not installed"),
        ("19.03.5", "2.40.3", "Docker Engine is 19.03.5; Sentry's installer needs 19.03.6 or newer"),
    ],
)
def test_requirements_pass_or_say_what_to_install(tmp_path: Path, docker_version: str, compose_version: str | None, message: str | None) -> None:
    path = _bin(tmp_path, docker_version, compose_version)
    done = subprocess.run(["sh", "-c", sentry_requirements_script()], env={"PATH": str(path)}, capture_output=True, text=True)
    if message is None:
        assert done.returncode == 0, done.stderr
        assert "meet the installer's minimums" in done.stdout
    else:
        assert done.returncode != 0 and message in done.stderr


FAKE_COMPOSE_PLUGIN = """#!/bin/sh
# A Docker CLI plugin answering as Docker Compose VERSION would (the plugin handshake, then `compose version`).
if [ "$1" = docker-cli-plugin-metadata ]; then
  printf '{"SchemaVersion":"0.1.0","Vendor":"samarth tests","Version":"vVERSION","ShortDescription":"stand-in"}\\n'
  exit 0
fi
[ "$2" = version ] && [ "$3" = --short ] && echo VERSION
"""


def test_requirements_on_a_real_docker_daemon(lab_session: LabSession) -> None:
    """Over SSH on a lab host: the real daemon's version passes, a missing Compose plugin is named, and a
    Compose plugin older or newer than the pinned installer's minimum is judged as the installer would."""
    host = lab_session.host("swarm-master")
    missing = ssh(host, "export DOCKER_CONFIG=/nonexistent\n" + sentry_requirements_script())
    assert missing.returncode != 0
    assert "the docker compose plugin is not installed; Sentry's installer needs Docker Compose 2.32.2" in missing.stderr
    for version, ok in (("2.24.5", False), ("2.32.2", True), ("2.40.3", True)):
        host.write_file(f"/opt/lab-compose-{version}/cli-plugins/docker-compose",
                        FAKE_COMPOSE_PLUGIN.replace("VERSION", version), mode=0o755)
        done = ssh(host, f"export DOCKER_CONFIG=/opt/lab-compose-{version}\n" + sentry_requirements_script())
        assert (done.returncode == 0) is ok, done.stderr
        if ok:
            daemon = docker(host, "version", "--format", "{{.Server.Version}}").stdout.strip()
            assert f"sentry: Docker {daemon}, Docker Compose {version} and bash" in done.stdout
        else:
            assert f"Docker Compose is {version}; Sentry's installer needs 2.32.2 or newer" in done.stderr
