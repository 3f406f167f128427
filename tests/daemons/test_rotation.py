"""Rotation reaches the servers: a database password the program (re)generates is applied inside the
running server before Vault publishes it.

Against a real Postgres (Debian's postgresql package) on loopback, set up as the official image sets
itself up (the service's role is the superuser; local socket and 127.0.0.1 trusted; every other address
asks for a SCRAM password; here all of TCP does), the program's own rendered script runs through a `docker` stand-in that
executes `docker exec <container> ...` here. Under mocks: every database container has its password
command, and Vault's secret for the service waits for it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.services.databases.catalogue import ENGINES
from components.shared.shell import script_files
from lab import free_port
from tests.support.skip_policy import IS_ROOT
from tools.offline import PROJECT, ProgramRun, is_secret, read_stack_values, reveal, run_program, stack_file

COMMAND = "command:remote:Command"
SECRET_V2 = "vault:kv/secretV2:SecretV2"
# The container's own network address (what `hostname -i` says inside it): not trusted, asks for a password.
CONTAINER_ADDRESS = "127.0.0.3"
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))



@dataclass
class Postgres:
    root: Path
    port: int
    role: str
    database: str

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def login(self, password: str) -> subprocess.CompletedProcess[str]:
        """A password login over TCP, as the services on the swarm log in."""
        return subprocess.run(
            [f"{POSTGRES_BIN[-1]}/psql", "-X", "-q", "-h", CONTAINER_ADDRESS, "-p", str(self.port), "-U", self.role,
             "-d", self.database, "-c", "SELECT 1"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
        )

    def server_log(self) -> str:
        return (self.root / "server.log").read_text()


# Postgres refuses to run as root: as root the server runs as the postgres user, as anyone else as that user.
SERVER_USER = ["runuser", "-u", "postgres", "--"] if IS_ROOT else []


def _as_server_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVER_USER, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not POSTGRES_BIN or (IS_ROOT and shutil.which("runuser") is None):
        pytest.skip("Debian postgresql not installed (tools/test-packages.txt lists it)")
    # Not under pytest's tmp_path: its root is kept 0700 for root, and the server may run as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="samarth-postgres-"))
    root.chmod(0o755)
    server = Postgres(root=root, port=free_port(), role="odk_adapter", database="odk_adapter")
    server.socket_dir.mkdir()
    (root / "old-password").write_text("oldPassword0123456789\n")
    if IS_ROOT:
        for path in (root, server.socket_dir, root / "old-password"):
            shutil.chown(path, "postgres")
    binaries = POSTGRES_BIN[-1]
    # As the image does: the service's role owns the cluster and the local socket is trusted. The image
    # also trusts 127.0.0.1 and asks every other address for a password; here every TCP client comes
    # from 127.0.0.1, so all of TCP asks for it.
    initdb = _as_server_user(f"{binaries}/initdb", "-D", str(root / "data"), "-U", server.role,
                             f"--pwfile={root / 'old-password'}", "--auth-local=trust", "--auth-host=scram-sha-256")
    assert initdb.returncode == 0, initdb.stderr
    # Every statement logged: the rotation must keep its own out of the log.
    process = subprocess.Popen(
        [*SERVER_USER, f"{binaries}/postgres", "-D", str(root / "data"), "-p", str(server.port),
         "-k", str(server.socket_dir), "-c", f"listen_addresses=127.0.0.1,{CONTAINER_ADDRESS}", "-c", "log_statement=all",
         "-c", "logging_collector=off"],
        stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([f"{binaries}/pg_isready", "-q", "-h", str(server.socket_dir), "-p", str(server.port)]).returncode != 0:
            assert process.poll() is None, server.server_log()
            assert time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.2)
        created = subprocess.run(
            [f"{binaries}/createdb", "-h", str(server.socket_dir), "-p", str(server.port), "-U", server.role, server.database],
            capture_output=True, text=True,
        )
        assert created.returncode == 0, created.stderr
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(root)


def _docker_stand_in(directory: Path, server: Postgres, container: str) -> dict[str, str]:
    """`docker exec [-i] [-e NAME] <container> CMD ...` run here, as inside the official image: psql
    reaches the server's socket, and `hostname -i` gives the container's network address."""
    directory.mkdir()
    (directory / "docker").write_text(
        f"""#!/bin/sh
echo "$*" >> {directory / 'calls'}
[ "$1" = exec ] || exit 99
shift
while :; do
  case "$1" in
    -i) shift ;;
    -e) shift 2 ;;
    *) break ;;
  esac
done
[ "$1" = {container} ] || {{ echo "Error: No such container: $1" >&2; exit 1; }}
shift
PGHOST={server.socket_dir} PGPORT={server.port} exec "$@"
"""
    )
    (directory / "hostname").write_text(f'#!/bin/sh\n[ "$1" = -i ] && echo "{CONTAINER_ADDRESS} ::1" && exit 0\nexit 1\n')
    for name in ("docker", "hostname"):
        (directory / name).chmod(0o755)
    return {**os.environ, "PATH": f"{directory}:{POSTGRES_BIN[-1]}:{os.environ['PATH']}"}


def _password_command(run: ProgramRun, server: str, container: str):
    return run.named(COMMAND, f"{server}-{container}-password")


def test_a_rotated_postgres_password_is_applied_in_the_running_server(prod: ProgramRun, postgres: Postgres, tmp_path: Path) -> None:
    command = _password_command(prod, "db2", "postgres-odk-adapter")
    script = command.inputs["create"]
    assert "ROLE=odk_adapter" in script.splitlines() and "DATABASE=odk_adapter" in script.splitlines()
    env = _docker_stand_in(tmp_path / "bin", postgres, "postgres-odk-adapter")
    assert postgres.login("wrong").returncode != 0  # the container's address really asks for the password
    old = ""

    generated = reveal(command.inputs["stdin"])  # what the program hands the script: the generated password
    rotated = "rotatedPassword98765432101234567\n"  # the next one, after `pulumi up --replace` of the password
    for stdin in (generated, generated, rotated):  # applied, applied again (idempotent), rotated
        result = subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "accepts the current password" in result.stdout
        new = stdin.strip()
        assert postgres.login(new).returncode == 0
        if old and old != new:
            assert postgres.login(old).returncode != 0
        old = new
        assert new not in result.stdout + result.stderr

    calls = (tmp_path / "bin" / "calls").read_text()
    server_log = postgres.server_log()
    assert "ALTER ROLE" not in server_log  # statement logging is on for everything else ...
    for password in (generated.strip(), rotated.strip()):
        assert password not in calls  # ... and the password is never an argument
        assert password not in server_log


@pytest.mark.parametrize("stdin", ["", "\n", "has space\n", "quote'injection\n"])
def test_a_password_that_is_not_a_generated_one_is_refused_before_touching_the_server(
    prod: ProgramRun, postgres: Postgres, tmp_path: Path, stdin: str
) -> None:
    script = _password_command(prod, "db2", "postgres-odk-adapter").inputs["create"]
    env = _docker_stand_in(tmp_path / "bin", postgres, "postgres-odk-adapter")
    result = subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "empty or not alphanumeric" in result.stderr or "no password on stdin" in result.stderr
    assert not (tmp_path / "bin" / "calls").exists()


def test_an_unreachable_database_fails_clearly_naming_the_container(prod: ProgramRun, postgres: Postgres, tmp_path: Path) -> None:
    script = _password_command(prod, "db2", "postgres-odk-adapter").inputs["create"]
    env = _docker_stand_in(tmp_path / "bin", postgres, "postgres-other")
    result = subprocess.run(["/bin/sh", "-c", script], input="abc123\n", capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "cannot connect to odk_adapter as odk_adapter in container postgres-odk-adapter" in result.stderr


def test_every_database_container_applies_its_password_before_vault_publishes_it(stack_run: ProgramRun) -> None:
    containers = [c for c in stack_run.of_type("docker:index/container:Container") if c.name.startswith(("db1-", "db2-"))]
    assert containers
    secrets = {s.inputs["name"]: s for s in stack_run.of_type(SECRET_V2)}
    for container in containers:
        server, name = container.name.split("-", 1)
        engine, service = name.split("-", 1)
        command = _password_command(stack_run, server, name)
        spec = ENGINES[engine]
        assert spec.password_script in script_files()
        assert f"CONTAINER={name}" in command.inputs["create"].splitlines()
        assert container.urn in command.dependencies
        assert container.outputs.get("id", f"{container.name}-id") in command.inputs["triggers"]
        assert is_secret(command.inputs["stdin"])
        password = stack_run.named("random:index/randomPassword:RandomPassword", f"{container.name}-password")
        assert reveal(command.inputs["stdin"]) == reveal(password.outputs["result"]) + "\n"
        assert command.inputs.get("addPreviousOutputInEnv") is False
        # Vault's copy for the service is written only after the server accepted the password.
        assert command.urn in secrets[f"samarth/{service}"].dependencies, container.name


# --- the other engines' scripts, with a `docker` stand-in that plays the server ------------------------

# Records each call's arguments and stdin; answers as a server whose current password is in $ACCEPTS.
ENGINE_DOCKER = """#!/bin/sh
echo "$*" >> "$STATE/calls"
input=$(cat)
printf '%s\\n' "$input" >> "$STATE/stdin"
case "$*" in
  *await_startup*) [ ! -e "$STATE/booting" ] ;;
  *change_password*) printf '%s' "$input" > "$STATE/accepts"; exit 0 ;;
  *authenticate_user*|*curl*) password=${input#*:}; password=${password%\\"}
    case "$*" in *curl*) ;; *) password=$input ;; esac
    [ "$password" = "$(cat "$STATE/accepts")" ] ;;
  *redis-cli*) [ "$REDISCLI_AUTH" = "$(cat "$STATE/accepts")" ] && echo PONG; exit 0 ;;
  *) exit 97 ;;
esac
"""


@pytest.mark.parametrize(
    ("container", "rotates"),
    [("rabbitmq-doc-generator", True), ("redis-odk-adapter", False), ("elasticsearch-fusionauth", False), ("opensearch-fusionauth", False)],
)
def test_engine_scripts_keep_the_password_off_argv_and_fail_closed(
    prod: ProgramRun, tmp_path: Path, container: str, rotates: bool
) -> None:
    run = prod
    if not [c for c in run.of_type(COMMAND) if c.name.endswith(f"-{container}-password")]:
        engine, service = container.split("-", 1)
        extra = {"server": "db2", "engines": [engine], "env": {"SEARCH": f"{{{engine}.url}}"}, "hostPorts": {engine: 9210}}
        values, _ = read_stack_values(stack_file("prod"))
        versions = {**json.loads(values[f"{PROJECT}:versions"]), engine: "docker.elastic.co/elasticsearch/elasticsearch:8.15.5"}
        run = run_program("prod", overrides={"versions": versions, "databases": {"services": {service + "-x": extra}}})
        assert run.error is None, run.error
        container = f"{container}-x"
    (command,) = [c for c in run.of_type(COMMAND) if c.name.endswith(f"-{container}-password")]
    script = command.inputs["create"]
    password = "newPassword0123456789abcdef"
    (tmp_path / "docker").write_text(ENGINE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "STATE": str(tmp_path)}

    (tmp_path / "accepts").write_text("previousPassword")
    if rotates:  # a broker that has not finished booting is not asked to change anything
        (tmp_path / "booting").touch()
        result = subprocess.run(["/bin/sh", "-c", script], input=password + "\n", capture_output=True, text=True, env=env, timeout=30)
        assert result.returncode != 0 and "did not finish booting" in result.stderr
        assert (tmp_path / "accepts").read_text() == "previousPassword"
        (tmp_path / "booting").unlink()
    result = subprocess.run(["/bin/sh", "-c", script], input=password + "\n", capture_output=True, text=True, env=env, timeout=30)
    if rotates:  # applied inside the running server, then proven
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "accepts").read_text() == password
    else:  # in force only from the container's start: a server still on the old one stops the update
        assert result.returncode != 0 and "does not accept the current password" in result.stderr
    assert password not in (tmp_path / "calls").read_text()
    assert password not in result.stdout + result.stderr

    (tmp_path / "accepts").write_text(password)
    result = subprocess.run(["/bin/sh", "-c", script], input=password + "\n", capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "accepts the current password" in result.stdout
    assert password not in (tmp_path / "calls").read_text()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian redis-server not installed (tools/test-packages.txt lists it)")
def test_the_redis_check_passes_only_when_the_running_server_requires_the_current_password(prod: ProgramRun, tmp_path: Path) -> None:
    """A real redis-server started with one password: the program's check accepts that one and refuses
    another (the update then stops before Vault publishes it), never putting either on a command line."""
    (command,) = [c for c in prod.of_type(COMMAND) if c.name.endswith("-redis-odk-adapter-password")]
    port = free_port()
    current = "currentRedisPassword0123456789ab"
    (tmp_path / "redis.conf").write_text(f"port {port}\nbind 127.0.0.1\nrequirepass {current}\nsave \"\"\nappendonly no\n")
    server = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `docker exec [-i] [-e NAME] redis-odk-adapter redis-cli ...`: redis-cli here, against that server.
    (bin_dir / "docker").write_text(
        f"""#!/bin/sh
echo "$*" >> {tmp_path / 'calls'}
shift
while :; do case "$1" in -i) shift ;; -e) shift 2 ;; *) break ;; esac; done
[ "$1" = redis-odk-adapter ] || exit 1
shift
[ "$1" = redis-cli ] || exit 97
shift
exec redis-cli -p {port} "$@"
"""
    )
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() not in ("PONG", "NOAUTH Authentication required."):
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        script = command.inputs["create"]
        accepted = subprocess.run(["/bin/sh", "-c", script], input=current + "\n", capture_output=True, text=True, env=env, timeout=30)
        assert accepted.returncode == 0, accepted.stderr
        refused = subprocess.run(["/bin/sh", "-c", script], input="rotatedButNotApplied42\n", capture_output=True, text=True, env=env, timeout=30)
        assert refused.returncode != 0 and "does not accept the current password" in refused.stderr
        calls = (tmp_path / "calls").read_text()
        assert current not in calls and "rotatedButNotApplied42" not in calls
    finally:
        server.terminate()
        server.wait(timeout=10)
