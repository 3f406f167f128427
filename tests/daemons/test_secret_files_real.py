"""The files that keep database passwords off command lines, read by the real programs: redis-server
with the rendered config file and command, curl with the rendered search-engine healthcheck config. Each checks
that the program works with the file and that the running process's argv carries no password."""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components.services.databases.catalogue import ENGINES
from lab import free_port
from tools.offline import ProgramRun, reveal

CONTAINER = "docker:index/container:Container"


def _container(run: ProgramRun, name: str) -> dict:
    return run.named(CONTAINER, name).plain_inputs



def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (.ci/run installs it)")
def test_redis_reads_its_password_from_the_uploaded_file(prod: ProgramRun, tmp_path: Path) -> None:
    inputs = _container(prod, "db1-redis-esamwad-backend")
    (upload,) = inputs["uploads"]
    password = dict(e.split("=", 1) for e in inputs["envs"])["REDISCLI_AUTH"]
    conf = tmp_path / Path(upload["file"]).name
    conf.write_text(upload["content"])
    conf.chmod(int(upload["permissions"], 8))
    command = list(inputs["command"])
    assert command[:2] == ["redis-server", upload["file"]]
    port = free_port()
    # The container's command with the file where this test put it, bound to loopback here.
    argv = ["redis-server", str(conf), *command[2:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        deadline = time.monotonic() + 10
        while subprocess.run([*cli, "ping"], capture_output=True, text=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        refused = subprocess.run([*cli, "ping"], capture_output=True, text=True)
        assert "NOAUTH" in refused.stdout + refused.stderr
        # The healthcheck's way: redis-cli takes the password from REDISCLI_AUTH, not from argv.
        answered = subprocess.run([*cli, "ping"], capture_output=True, text=True, env={**os.environ, "REDISCLI_AUTH": password})
        assert answered.stdout.strip() == "PONG"
        assert password not in _cmdline(server.pid)
        assert subprocess.run([*cli, "config", "get", "maxmemory"], capture_output=True, text=True,
                              env={**os.environ, "REDISCLI_AUTH": password}).stdout.split()[-1] == str(192 * 1024 * 1024)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_search_healthcheck_authenticates_with_its_curl_config(prod: ProgramRun, tmp_path: Path) -> None:
    inputs = _container(prod, "db2-opensearch-fusionauth")
    (upload,) = inputs["uploads"]
    password = dict(e.split("=", 1) for e in inputs["envs"])["OPENSEARCH_INITIAL_ADMIN_PASSWORD"]
    curlrc = tmp_path / "healthcheck.curlrc"
    curlrc.write_text(upload["content"])
    tests = list(inputs["healthcheck"]["tests"])
    assert tests[0] == "CMD"
    expected = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    seen: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            ok = self.headers.get("Authorization") == expected
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b'{"status":"green"}' if ok else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        argv = [part.replace(upload["file"], str(curlrc)).replace("127.0.0.1:9200", f"127.0.0.1:{port}") for part in tests[1:]]
        assert all(password not in part for part in argv)
        assert subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode == 0
        assert seen and seen[-1].startswith("/_cluster/health?wait_for_status=yellow")
        curlrc.write_text('user = "admin:not-the-password"\n')
        assert subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    assert reveal(upload["permissions"]) == "0400"


FIXTURES = Path(__file__).parents[1] / "support" / "fixtures" / "upstreams"


def test_redis_config_is_owned_by_the_user_the_image_runs_redis_as() -> None:
    """The published redis:7.4.11 (its build steps, tests/support/fixtures/upstreams/redis-7.4.11) creates redis
    as uid/gid 999 and starts `redis-server ...` through its entrypoint, which runs it as root or drops to
    that user (docs/upstreams.md, redis): a 0400 config file owned by 999 is readable either way."""
    build = (FIXTURES / "redis-7.4.11" / "repo-info-7.4.11-amd64.md").read_text()
    assert "groupadd -r -g 999 redis" in build and "useradd -r -g redis -u 999 redis" in build
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in build
    (secret_file,) = ENGINES["redis"].files
    assert (secret_file.owner, secret_file.group, secret_file.mode) == ("999", "999", "0400")
    assert ENGINES["redis"].command[:2] == ("redis-server", secret_file.path)
