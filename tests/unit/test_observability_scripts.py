"""The rendered Sentry/PostHog scripts, run in a real shell against a scratch directory, with fake
``git`` and ``docker`` commands on PATH that record what they were asked to do."""

from __future__ import annotations

import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.services.observability.component import (
    MARKER,
    POSTHOG_REPOSITORY,
    SENTRY_REPOSITORY,
    ComposeRelease,
    posthog_release,
    sentry_release,
)
from components.services.observability.settings import PostHogImages, PostHogSettings, SentrySettings

PRIVATE_IP = "10.20.0.10"
POSTHOG_REF = "063b9643fe43118384c7479911b08857dcdbd9a5"
ADMIN_PASSWORD = "adminpw0123456789"

FAKE_GIT = r"""#!/bin/sh
# git -C DIR ... or git clone URL DIR, as the install script calls it.
repo_dir=""
if [ "$1" = "-C" ]; then repo_dir=$2; shift 2; fi
if [ "$1" = "-c" ]; then shift 2; fi
echo "git $*" >> "$FAKE_LOG"
case "$1" in
  clone) mkdir -p "$4/.git" && cp -R "$FAKE_REPO/." "$4/" ;;
  fetch) ;;
  rev-parse)
    for ref in $FAKE_REFS; do [ "$ref" = "$4" ] && exit 0; done
    exit 1 ;;
  checkout) echo "$4" > "$repo_dir/.git/HEAD" ;;
  *) echo "fake git: unexpected $*" >&2; exit 2 ;;
esac
"""

FAKE_DOCKER = r"""#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$*" in
  *"$FAKE_DOCKER_FAIL"*) echo "docker: simulated failure" >&2; exit 1 ;;
  *createuser*) while IFS= read -r line; do echo "createuser read: $line" >> "$FAKE_LOG"; done ;;
  # The services of the checkout's own docker-compose.yml (run in the checkout, as compose is).
  "compose config --services") "$FAKE_PYTHON" -c 'import yaml; print("\n".join(yaml.safe_load(open("docker-compose.yml"))["services"]))' ;;
  "compose ps --all --format "*) printf '%s\n' "$FAKE_PS" ;;
  "compose ps --quiet "*) echo c1 ;;
  # The containers as `docker inspect` reports them: on the Nth call FAKE_INSPECT's Nth ';'-separated
  # field (its last after that), one container per ','-separated line.
  "inspect "*)
    echo x >> "$FAKE_LOG.inspected"
    printf '%s\n' "$FAKE_INSPECT" | awk -F';' -v n="$(wc -l < "$FAKE_LOG.inspected")" '{ i = n < NF ? n : NF; gsub(",", "\n", $i); print $i }' ;;
esac
"""

FAKE_SLEEP = r"""#!/bin/sh
echo "sleep $*" >> "$FAKE_LOG"
"""

FAKE_SENTRY_INSTALLER = r"""#!/bin/sh
echo "install.sh $* REPORT_SELF_HOSTED_ISSUES=$REPORT_SELF_HOSTED_ISSUES" >> "$FAKE_LOG"
if read -r line; then echo "install.sh read stdin: $line" >> "$FAKE_LOG"; fi
"""

SENTRY_ENV = "COMPOSE_PROJECT_NAME=sentry-self-hosted\nSENTRY_EVENT_RETENTION_DAYS=90\nSENTRY_BIND=9000\nHEALTHCHECK_INTERVAL=30s\n"

# posthog-deploy's sample.env at the pinned commit (keys and defaults).
POSTHOG_SAMPLE = """POSTGRES_USER=posthog
POSTGRES_DB=posthog
POSTGRES_PASSWORD=posthog
POSTGRES_HOST=posthog_db
POSTGRES_PORT=6432
DATABASE_URL="postgres://posthog:posthog@posthog_db:6432/posthog"

PORT="8023"
DOMAIN=example.com  # must be an https domain
SENTRY_DSN=''
SITE_URL=https://${DOMAIN}
DISABLE_SECURE_SSL_REDIRECT=true
IS_BEHIND_PROXY=true
TRUST_ALL_PROXIES=true

CLICKHOUSE_DATABASE=posthog
REDIS_URL=redis://redis:6379/
SECRET_KEY=1e027b3c2e4aa62260cd71a8ae253827196072dd153480b6ee9fb264
DEPLOYMENT=hobby

MINIO_ROOT_USER=MINIO_ROOT_USER
MINIO_ROOT_PASSWORD=MINIO_ROOT_PASSWORD
"""
POSTHOG_SECRETS = {
    "POSTGRES_PASSWORD": "dbpw0123",
    "DATABASE_URL": "postgres://posthog:dbpw0123@posthog_db:6432/posthog",
    "SECRET_KEY": "sk0123456789",
    "MINIO_ROOT_PASSWORD": "miniopw0123",
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]


class ScratchServer:
    """A scratch 'server': fake commands on PATH, an upstream checkout template, a call log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.repo = root / "upstream"
        self.log = root / "calls.log"
        self.bin.mkdir()
        self.repo.mkdir()
        for name, text in (("git", FAKE_GIT), ("docker", FAKE_DOCKER), ("sleep", FAKE_SLEEP)):
            _executable(self.bin / name, text)
        self.refs: list[str] = []
        self.docker_fail = "never-matches"
        self.ps = ""
        self.inspect = "web 0 running"

    def run(self, text: str, stdin: str = "") -> Result:
        self.log.write_text("")
        Path(f"{self.log}.inspected").unlink(missing_ok=True)
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.root),
            "FAKE_LOG": str(self.log),
            "FAKE_REPO": str(self.repo),
            "FAKE_REFS": " ".join(self.refs),
            "FAKE_DOCKER_FAIL": self.docker_fail,
            "FAKE_PYTHON": sys.executable,
            "FAKE_PS": self.ps,
            "FAKE_INSPECT": self.inspect,
        }
        done = subprocess.run(["sh", "-c", text], input=stdin, capture_output=True, text=True, env=env, timeout=30)
        calls = [line for line in self.log.read_text().splitlines() if line]
        return Result(done.returncode, done.stdout, done.stderr, calls)


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def server(tmp_path: Path) -> ScratchServer:
    return ScratchServer(tmp_path)


def _sentry(server: ScratchServer, ref: str = "25.10.0") -> ComposeRelease:
    settings = SentrySettings(
        hostName="sentry.samarth.example.org",
        adminEmail="devops@samarth.example.org",
        directory=str(server.root / "opt" / "sentry"),
    )
    return sentry_release(settings, ref, PRIVATE_IP)


SENTRY_RELEASE_FILES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams" / "sentry-self-hosted-25.10.0"


def _sentry_upstream(server: ScratchServer, *tags: str) -> None:
    (server.repo / ".env").write_text(SENTRY_ENV)
    # The files the proxy settings are written from, as the release has them.
    (server.repo / "sentry").mkdir(exist_ok=True)
    for name in ("config.example.yml", "sentry.conf.example.py"):
        (server.repo / "sentry" / name).write_text((SENTRY_RELEASE_FILES / name).read_text())
    (server.repo / "nginx.conf").write_text((SENTRY_RELEASE_FILES / "nginx.conf").read_text())
    _executable(server.repo / "install.sh", FAKE_SENTRY_INSTALLER)
    server.refs = [f"refs/tags/{tag}^{{commit}}" for tag in tags]


def test_sentry_first_install_clones_the_tag_installs_unattended_and_creates_the_admin(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    release = _sentry(server)
    result = server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n")

    assert result.returncode == 0, result.stderr
    assert f"git clone --quiet {SENTRY_REPOSITORY} {release.directory}" in result.calls
    assert "git checkout --quiet --force 25.10.0" in result.calls
    assert "install.sh --skip-user-creation --no-report-self-hosted-issues REPORT_SELF_HOSTED_ISSUES=0" in result.calls
    assert not any(call.startswith("install.sh read stdin") for call in result.calls)
    assert "docker compose --env-file .env.custom up --detach --wait --wait-timeout 900" in result.calls
    # The password answers createuser's prompt (and its confirmation) on stdin, not in its argv.
    assert (
        "docker compose --env-file .env.custom run --rm -T web createuser --email devops@samarth.example.org "
        "--superuser --force-update"
    ) in result.calls
    assert [c for c in result.calls if c.startswith("createuser read: ")] == [f"createuser read: {ADMIN_PASSWORD}"] * 2
    assert not any(ADMIN_PASSWORD in c for c in result.calls if c.startswith("docker "))
    directory = Path(release.directory)
    custom = (directory / ".env.custom").read_text().splitlines()
    assert f"SENTRY_BIND='{PRIVATE_IP}:9000'" in custom
    assert "SENTRY_BIND=9000" not in custom
    assert "COMPOSE_PROJECT_NAME=sentry-self-hosted" in custom
    assert stat.S_IMODE((directory / ".env.custom").stat().st_mode) == 0o600
    ref, fingerprint, secrets = (directory / MARKER).read_text().split()
    assert (ref, fingerprint) == ("25.10.0", release.fingerprint())
    assert len(secrets) == 16 and ADMIN_PASSWORD not in secrets  # a digest of the secrets, not them
    assert "sentry: installing 25.10.0" in result.stdout
    # Sentry served behind the proxy: its URL prefix and CSRF origin are the public https name.
    assert "system.url-prefix: 'https://sentry.samarth.example.org'" in (directory / "sentry" / "config.yml").read_text()
    assert 'CSRF_TRUSTED_ORIGINS = ["https://sentry.samarth.example.org"]' in (directory / "sentry" / "sentry.conf.py").read_text()
    assert "source: ./nginx.samarth.conf" in (directory / "docker-compose.override.yml").read_text()


def test_sentry_rerun_at_the_same_version_does_nothing(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    script = _sentry(server).install_script()
    assert server.run(script, stdin=f"{ADMIN_PASSWORD}\n").returncode == 0

    again = server.run(script, stdin=f"{ADMIN_PASSWORD}\n")
    assert again.returncode == 0, again.stderr
    assert again.calls == []
    assert "already installed with this configuration; nothing to do" in again.stdout


def test_sentry_new_version_takes_the_upgrade_path(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0", "25.11.0")
    assert server.run(_sentry(server).install_script(), stdin=f"{ADMIN_PASSWORD}\n").returncode == 0

    upgrade = _sentry(server, "25.11.0")
    result = server.run(upgrade.install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert result.returncode == 0, result.stderr
    assert "git fetch --quiet --tags --force origin" in result.calls
    assert not any(call.startswith("git clone") for call in result.calls)
    assert "git checkout --quiet --force 25.11.0" in result.calls
    assert any(call.startswith("install.sh --skip-user-creation") for call in result.calls)
    assert "sentry: upgrading from 25.10.0 to 25.11.0" in result.stdout
    assert (Path(upgrade.directory) / MARKER).read_text().startswith("25.11.0 ")


def test_a_failing_step_exits_non_zero_naming_it_and_keeps_the_old_marker(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0", "25.11.0")
    assert server.run(_sentry(server).install_script(), stdin=f"{ADMIN_PASSWORD}\n").returncode == 0
    before = (Path(_sentry(server).directory) / MARKER).read_text()

    server.docker_fail = "up --detach"
    result = server.run(_sentry(server, "25.11.0").install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert result.returncode != 0
    assert "sentry-install: failed while starting Sentry" in result.stderr
    assert (Path(_sentry(server).directory) / MARKER).read_text() == before


def test_a_ref_that_is_not_a_release_tag_is_refused(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    result = server.run(_sentry(server, "25.12.0").install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert result.returncode != 0
    assert f"25.12.0 is not a release tag of {SENTRY_REPOSITORY}" in result.stderr
    assert not any(call.startswith("git checkout") for call in result.calls)


def test_missing_secret_on_stdin_fails_before_touching_the_server(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    result = server.run(_sentry(server).install_script(), stdin="")
    assert result.returncode != 0
    assert "stdin ended before SENTRY_ADMIN_PASSWORD" in result.stderr
    assert result.calls == []


def test_an_upstream_env_without_a_key_we_set_stops_the_install(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    (server.repo / ".env").write_text("COMPOSE_PROJECT_NAME=sentry-self-hosted\nSENTRY_BIND=9000\n")
    result = server.run(_sentry(server).install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert result.returncode != 0
    assert ".env at 25.10.0 has no SENTRY_EVENT_RETENTION_DAYS" in result.stderr
    assert not any(call.startswith("install.sh") for call in result.calls)


def test_delete_stops_the_stack_keeps_volumes_and_a_new_create_reinstalls(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    release = _sentry(server)
    assert server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n").returncode == 0

    deleted = server.run(release.delete_script())
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.calls == ["docker compose --env-file .env.custom down --remove-orphans"]
    assert not (Path(release.directory) / MARKER).exists()
    assert (Path(release.directory) / ".env.custom").exists()

    recreated = server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert recreated.returncode == 0, recreated.stderr
    assert "git fetch --quiet --tags --force origin" in recreated.calls
    assert "docker compose --env-file .env.custom up --detach --wait --wait-timeout 900" in recreated.calls


def test_delete_of_a_never_installed_stack_succeeds(server: ScratchServer) -> None:
    result = server.run(_sentry(server).delete_script())
    assert result.returncode == 0, result.stderr
    assert result.calls == []


def _posthog(server: ScratchServer) -> ComposeRelease:
    settings = PostHogSettings(hostName="posthog.samarth.example.org", directory=str(server.root / "opt" / "posthog"))
    images = PostHogImages(
        web="posthog/posthog:release-1.40.0",
        clickhouse="clickhouse/clickhouse-server:22.3.20.29",
        kafka="apache/kafka:3.9.1",
        zookeeper="zookeeper:3.9.5",
        postgres="postgres:12.22-alpine",
        redis="redis:6.2.24-alpine",
    )
    return posthog_release(settings, POSTHOG_REF, images, "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", PRIVATE_IP)


POSTHOG_RELEASE_FILES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams" / "posthog-deploy-063b964"
POSTHOG_SERVICES = "db redis clickhouse zookeeper kafka worker web plugins object_storage"
POSTHOG_STARTUP = [
    "docker compose up --detach db",
    "docker compose exec -T db pg_isready -q -p 6432 -U posthog",
    "docker compose exec -T db psql -X -q -v ON_ERROR_STOP=1 -p 6432 -U posthog -d posthog",
    f"docker compose up --detach --remove-orphans --wait --wait-timeout 900 {POSTHOG_SERVICES}",
    f"docker compose ps --quiet {POSTHOG_SERVICES}",
    "docker inspect --format {{index .Config.Labels \"com.docker.compose.service\"}} {{.RestartCount}} {{.State.Status}} c1",
    "sleep 90",
    f"docker compose ps --quiet {POSTHOG_SERVICES}",
    "docker inspect --format {{index .Config.Labels \"com.docker.compose.service\"}} {{.RestartCount}} {{.State.Status}} c1",
]


def _posthog_upstream(server: ScratchServer) -> None:
    """The checkout as posthog-deploy has it at the pinned commit: its compose file, its sample.env (keys
    and defaults) and docker-server with git's mode for it, 100644."""
    (server.repo / "docker-compose.yml").write_text((POSTHOG_RELEASE_FILES / "docker-compose.yml").read_text())
    (server.repo / "sample.env").write_text(POSTHOG_SAMPLE)
    server_script = server.repo / "docker-server"
    server_script.write_text((POSTHOG_RELEASE_FILES / "docker-server").read_text())
    server_script.chmod(0o644)
    server.refs = [f"{POSTHOG_REF}^{{commit}}"]


def _posthog_stdin(release: ComposeRelease, secrets: dict[str, str] = POSTHOG_SECRETS) -> str:
    return "".join(f"{secrets[name]}\n" for name in release.secrets)


def test_posthog_install_renders_env_from_the_sample_with_secrets_from_stdin(server: ScratchServer) -> None:
    _posthog_upstream(server)
    release = _posthog(server)
    stdin = _posthog_stdin(release)
    result = server.run(release.install_script(), stdin=stdin)

    assert result.returncode == 0, result.stderr
    assert f"git clone --quiet {POSTHOG_REPOSITORY} {release.directory}" in result.calls
    assert f"git checkout --quiet --force {POSTHOG_REF}" in result.calls
    assert result.calls[result.calls.index("docker compose config --quiet") :] == [
        "docker compose config --quiet",
        "docker compose config --services",
        "docker volume create posthog-kafka-data",
        "docker compose pull --quiet",
        *POSTHOG_STARTUP,
    ]
    directory = Path(release.directory)
    env = (directory / ".env").read_text().splitlines()
    assert "DOMAIN='posthog.samarth.example.org'" in env
    assert "SITE_URL='https://posthog.samarth.example.org'" in env
    for name, value in POSTHOG_SECRETS.items():
        assert f"{name}='{value}'" in env
    # The sample's own keys stay; its placeholder secrets do not.
    assert "CLICKHOUSE_DATABASE=posthog" in env and "DEPLOYMENT=hobby" in env
    assert not any(line.startswith(("SECRET_KEY=1e027", "POSTGRES_PASSWORD=posthog", "DOMAIN=example.com")) for line in env)
    assert stat.S_IMODE((directory / ".env").stat().st_mode) == 0o600
    override = (directory / "docker-compose.override.yml").read_text()
    assert f'- "{PRIVATE_IP}:8023:8000"' in override
    assert "ports: !reset []" in override

    again = server.run(release.install_script(), stdin=stdin)
    assert again.returncode == 0 and again.calls == []


def test_posthog_web_gets_docker_server_as_an_executable_copy(server: ScratchServer) -> None:
    """compose/start runs ./bin/docker-server directly; the checkout's file is mode 0644 (git's 100644)."""
    _posthog_upstream(server)
    release = _posthog(server)
    assert server.run(release.install_script(), stdin=_posthog_stdin(release)).returncode == 0

    directory = Path(release.directory)
    installed = directory / "docker-server.samarth"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o755
    assert installed.read_text() == (POSTHOG_RELEASE_FILES / "docker-server").read_text()
    # The tracked file is left as git has it (a checkout would reset it anyway).
    assert stat.S_IMODE((directory / "docker-server").stat().st_mode) == 0o644
    assert "./docker-server.samarth:/code/bin/docker-server:ro" in (directory / "docker-compose.override.yml").read_text()


def test_a_posthog_service_in_a_crash_loop_fails_the_install_naming_it(server: ScratchServer) -> None:
    _posthog_upstream(server)
    release = _posthog(server)
    server.docker_fail = "--wait-timeout"
    server.ps = "db running healthy\nkafka running \nweb restarting starting"
    result = server.run(release.install_script(), stdin=_posthog_stdin(release))

    assert result.returncode != 0
    assert (
        "posthog-install: PostHog did not become healthy within 900s: web (restarting, starting); "
        f"see 'docker compose logs --tail 200 web' and 'docker compose ps --all' in {release.directory}"
    ) in result.stderr
    assert f"docker compose ps --all --format {{{{.Service}}}} {{{{.State}}}} {{{{.Health}}}} {POSTHOG_SERVICES}" in result.calls
    assert not (Path(release.directory) / MARKER).exists()


def test_a_posthog_service_restarting_after_the_wait_fails_the_install(server: ScratchServer) -> None:
    """Without a healthcheck a service counts as up while it runs, between two crashes too: one whose
    restart count rises in every watch window fails the install."""
    _posthog_upstream(server)
    release = _posthog(server)
    server.inspect = ";".join(f"web 0 running,kafka {n} running,plugins 1 running" for n in range(6))
    result = server.run(release.install_script(), stdin=_posthog_stdin(release))

    assert result.returncode != 0
    assert (
        "posthog-install: PostHog's kafka restarted or stopped in each of 4 windows of 90s after the wait (a crash loop): "
        "see 'docker compose logs --tail 200 kafka'"
    ) in result.stderr
    assert result.calls.count("sleep 90") == 4
    assert not (Path(release.directory) / MARKER).exists()


def test_a_posthog_service_that_restarts_once_more_then_settles_passes(server: ScratchServer) -> None:
    """plugins may crash while web still migrates (it needs the tables) and restart once after the wait."""
    _posthog_upstream(server)
    release = _posthog(server)
    server.inspect = "web 0 running,plugins 3 running;web 0 running,plugins 4 running;web 0 running,plugins 4 running"
    result = server.run(release.install_script(), stdin=_posthog_stdin(release))

    assert result.returncode == 0, result.stderr
    assert result.calls.count("sleep 90") == 2
    assert (Path(release.directory) / MARKER).exists()


def test_a_checkout_whose_services_the_program_does_not_know_stops_before_pulling(server: ScratchServer) -> None:
    _posthog_upstream(server)
    compose = (server.repo / "docker-compose.yml").read_text()
    (server.repo / "docker-compose.yml").write_text(compose.replace("    asyncmigrationscheck:", "    migrate:"))
    release = _posthog(server)
    result = server.run(release.install_script(), stdin=_posthog_stdin(release))

    assert result.returncode != 0
    assert f"posthog-deploy at {POSTHOG_REF} has the services clickhouse db kafka migrate object_storage" in result.stderr
    assert "review POSTHOG_SERVICES and POSTHOG_ONE_SHOTS" in result.stderr
    assert not [c for c in result.calls if " pull " in c or " up " in c]


def test_a_rotated_sentry_admin_password_is_applied_without_a_reinstall(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    release = _sentry(server)
    assert server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n").returncode == 0
    marker = (Path(release.directory) / MARKER).read_text()

    rotated = server.run(release.install_script(), stdin="rotatedAdminPassword42\n")
    assert rotated.returncode == 0, rotated.stderr
    assert "applying changed secrets" in rotated.stdout
    assert not [c for c in rotated.calls if c.startswith(("git", "install.sh")) or " up " in c]
    (createuser,) = [c for c in rotated.calls if c.startswith("docker") and "createuser" in c]
    assert "--force-update" in createuser
    assert "createuser read: rotatedAdminPassword42" in rotated.calls  # the new password, on its stdin
    assert (Path(release.directory) / MARKER).read_text() != marker
    again = server.run(release.install_script(), stdin="rotatedAdminPassword42\n")
    assert again.returncode == 0 and again.calls == []


def test_rotated_posthog_secrets_re_render_env_apply_the_database_password_and_restart(server: ScratchServer) -> None:
    _posthog_upstream(server)
    release = _posthog(server)
    assert server.run(release.install_script(), stdin=_posthog_stdin(release)).returncode == 0

    new = {**POSTHOG_SECRETS, "POSTGRES_PASSWORD": "newdbpw456", "DATABASE_URL": "postgres://posthog:newdbpw456@posthog_db:6432/posthog", "SECRET_KEY": "newsk789"}
    rotated = server.run(release.install_script(), stdin=_posthog_stdin(release, new))
    assert rotated.returncode == 0, rotated.stderr
    assert "applying changed secrets" in rotated.stdout
    # No fetch, no pull: the database role first, then compose recreates what reads the changed .env
    # and waits for it as on an install.
    assert rotated.calls == POSTHOG_STARTUP
    env = (Path(release.directory) / ".env").read_text().splitlines()
    for name, value in new.items():
        assert f"{name}='{value}'" in env
    assert "newdbpw456" not in "\n".join(rotated.calls) + rotated.stdout + rotated.stderr


def test_a_marker_from_before_secrets_were_recorded_applies_them_once(server: ScratchServer) -> None:
    _sentry_upstream(server, "25.10.0")
    release = _sentry(server)
    assert server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n").returncode == 0
    (Path(release.directory) / MARKER).write_text(f"25.10.0 {release.fingerprint()}\n")

    result = server.run(release.install_script(), stdin=f"{ADMIN_PASSWORD}\n")
    assert result.returncode == 0, result.stderr
    assert not [c for c in result.calls if c.startswith(("git", "install.sh"))]
    assert len((Path(release.directory) / MARKER).read_text().split()) == 3
