"""Real tools: Debian's nginx checks the rendered config; Debian's docker-registry runs the rendered
config with an htpasswd from a real bcrypt hash; the reload script runs in sh with a fake docker."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest

from components.config import load_stack_config
from components.services.edge import component as edge
from components.services.edge.settings import EdgeTls
from components.services.registry import component as registry
from components.services.registry.settings import public_host
from lab import free_port
from tests.support.nginx_probe import NGINX, temp_paths
from tests.support.nginx_probe import check as nginx_t
from tests.support.rendered import nginx_config
from tools.offline import PROJECT, read_stack_values, stack_file

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _config(stack: str):
    values, _ = read_stack_values(stack_file(stack))
    return load_stack_config(PROJECT, values)


def _with_tls(config, cert: Path, key: Path):
    tls = EdgeTls(mode="files", certificatePath=str(cert), keyPath=str(key))
    return config.model_copy(update={"edge": config.edge.model_copy(update={"tls": tls})})


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=samarth-test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def _nginx_main_conf(prefix: Path, include: Path) -> Path:
    """A main nginx.conf like the image's: the rendered file is included inside ``http {}``."""
    main = prefix / "nginx.conf"
    main.write_text(f"pid {prefix}/nginx.pid;\nevents {{}}\nhttp {{\n  {temp_paths(prefix)}\n  access_log off;\n  include {include};\n}}\n")
    return main


@pytest.mark.skipif(not os.path.exists(NGINX), reason="Debian nginx not installed (.ci/run installs it)")
@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_rendered_nginx_config_passes_nginx_t(stack: str, tmp_path: Path) -> None:
    config = _config(stack)
    cert, key = _self_signed(tmp_path)
    conf = tmp_path / edge.CONF_FILE
    rendered = nginx_config(
        _with_tls(config, cert, key),
        config.servers["application"].private_ip,
        config.servers["swarm-master"].private_ip,
    )
    # The Vault CA the container gets as an upload: nginx -t loads it, so it must be a certificate.
    assert edge.ca_file("vault") in rendered
    conf.write_text(rendered.replace(edge.ca_file("vault"), str(cert)))
    main = _nginx_main_conf(tmp_path, conf)
    result = nginx_t(main, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.skipif(not os.path.exists(NGINX), reason="Debian nginx not installed (.ci/run installs it)")
def test_nginx_t_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check the reload relies on does catch mistakes (here: a missing certificate)."""
    config = _config("prod")
    conf = tmp_path / edge.CONF_FILE
    missing = _with_tls(config, tmp_path / "missing.pem", tmp_path / "missing.key")
    cert, _ = _self_signed(tmp_path)
    conf.write_text(nginx_config(missing, "10.20.0.10", "10.20.0.31").replace(edge.ca_file("vault"), str(cert)))
    main = _nginx_main_conf(tmp_path, conf)
    result = nginx_t(main, tmp_path)
    assert result.returncode != 0 and "missing.pem" in result.stderr



def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.skipif(not os.path.exists(REGISTRY), reason="Debian docker-registry not installed (.ci/run installs it)")
def test_registry_with_rendered_config_and_bcrypt_htpasswd_requires_auth(tmp_path: Path) -> None:
    password = "generated-" + os.urandom(8).hex()
    # pulumi-random's bcrypt_hash is a $2a$ hash; Python's bcrypt writes the same hash as $2b$.
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode().replace("$2b$", "$2a$", 1)
    (tmp_path / "htpasswd").write_text(f"{registry.USERNAME}:{digest}\n")
    (tmp_path / "config.yml").write_text(registry.render_config("https://registry.samarth.example.org", "http-secret"))
    port, debug_port = free_port(), free_port()
    # Only what differs between the container and this test is overridden, the way the registry
    # documents it: REGISTRY_<section>_<key> environment variables.
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_DEBUG_ADDR": f"127.0.0.1:{debug_port}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH_HTPASSWD_PATH": str(tmp_path / "htpasswd"),
    }
    log = (tmp_path / "processes.log").open("w")
    process = subprocess.Popen([REGISTRY, "serve", str(tmp_path / "config.yml")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "processes.log").read_text()
                assert time.monotonic() < deadline, "registry did not start listening"
                time.sleep(0.1)
        assert _get(f"{base}/v2/") == 401
        assert _get(f"{base}/v2/", (registry.USERNAME, "wrong-password")) == 401
        assert _get(f"{base}/v2/", (registry.USERNAME, password)) == 200
        assert _get(f"{base}/v2/_catalog", (registry.USERNAME, password)) == 200
        # What the container healthcheck asks.
        assert _get(f"http://127.0.0.1:{debug_port}/debug/health") == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# --- the reload script, run by sh with a fake docker ------------------------------------------------

FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$1" in
  inspect) echo "$FAKE_RUNNING" ;;
  exec)
    case "$3 $4" in
      "nginx -t") grep -q BROKEN "$LIVE" && { echo "nginx: [emerg] broken" >&2; exit 1; }; exit 0 ;;
      "nginx -s") exit 0 ;;
    esac ;;
esac
"""


def _run_reload(tmp_path: Path, config: str, running: str = "true") -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    live_dir = tmp_path / "conf.d"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "docker.log"),
        "FAKE_RUNNING": running,
        "LIVE": str(live_dir / edge.CONF_FILE),
    }
    return subprocess.run(
        ["sh", "-c", edge.reload_script("nginx", str(live_dir))], input=config, env=env, capture_output=True, text=True
    )


def test_reload_installs_checks_and_reloads_and_is_safe_to_repeat(tmp_path: Path) -> None:
    for _ in range(2):
        result = _run_reload(tmp_path, "server {}\n")
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "conf.d" / edge.CONF_FILE).read_text() == "server {}\n"
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert calls.count("docker exec nginx nginx -t") == 2
    assert calls.count("docker exec nginx nginx -s reload") == 2
    assert calls.index("docker exec nginx nginx -t") < calls.index("docker exec nginx nginx -s reload")
    assert sorted(p.name for p in (tmp_path / "conf.d").iterdir()) == [edge.CONF_FILE]


def test_reload_puts_the_previous_config_back_when_nginx_t_fails(tmp_path: Path) -> None:
    assert _run_reload(tmp_path, "good\n").returncode == 0
    result = _run_reload(tmp_path, "BROKEN\n")
    assert result.returncode != 0
    assert "nginx -t rejected the new config; the previous one is back in place" in result.stderr
    assert (tmp_path / "conf.d" / edge.CONF_FILE).read_text() == "good\n"
    assert (tmp_path / "docker.log").read_text().splitlines().count("docker exec nginx nginx -s reload") == 1


def test_reload_on_a_fresh_server_with_a_broken_config_leaves_no_file(tmp_path: Path) -> None:
    result = _run_reload(tmp_path, "BROKEN\n")
    assert result.returncode != 0
    assert not (tmp_path / "conf.d" / edge.CONF_FILE).exists()


def test_reload_fails_clearly_when_the_container_is_not_running(tmp_path: Path) -> None:
    result = _run_reload(tmp_path, "good\n", running="false")
    assert result.returncode != 0
    assert "container nginx is not running" in result.stderr
    assert "failed while" not in result.stderr, "fail() names the problem itself"


# --- Nginx with the rendered config in front of the registry, on a loopback address of our own ------


def _curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "10", *args], capture_output=True, text=True)


@pytest.mark.skipif(
    not (os.path.exists(NGINX) and os.path.exists(REGISTRY) and shutil.which("curl")),
    reason="needs Debian nginx, docker-registry and curl (.ci/run installs them)",
)
def test_nginx_fronts_the_registry_with_tls_redirect_and_no_body_limit(tmp_path: Path) -> None:
    config = _config("prod")
    # A loopback address of our own: the registry keeps its real port (5000) without colliding with
    # anything else on the machine, and the rendered proxy_pass is used unchanged.
    ip = f"127.{os.getpid() % 250 + 1}.{os.urandom(1)[0] % 250 + 1}.{os.urandom(1)[0] % 250 + 1}"
    http_port, https_port = free_port(), free_port()
    cert, key = _self_signed(tmp_path)
    # The Vault CA the container gets as an upload (nginx loads it at start): any certificate will do here.
    text = nginx_config(_with_tls(config, cert, key), ip, ip).replace(edge.ca_file("vault"), str(cert))
    # Only the public listen ports move (80/443 are privileged and may be taken).
    text = text.replace("listen 80 ", f"listen {ip}:{http_port} ").replace("listen 443 ", f"listen {ip}:{https_port} ")
    text = text.replace(f"listen 127.0.0.1:{edge.HEALTH_PORT};", f"listen {ip}:{free_port()};")
    conf = tmp_path / edge.CONF_FILE
    conf.write_text(text)
    main = _nginx_main_conf(tmp_path, conf)

    password = "generated-" + os.urandom(8).hex()
    (tmp_path / "htpasswd").write_text(f"{registry.USERNAME}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()}\n")
    public = public_host(config.edge_routes())
    (tmp_path / "config.yml").write_text(registry.render_config(f"https://{public}", "http-secret"))
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": f"{ip}:{registry.PORT}",
        "REGISTRY_HTTP_DEBUG_ADDR": f"{ip}:{free_port()}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH_HTPASSWD_PATH": str(tmp_path / "htpasswd"),
    }
    logs = (tmp_path / "processes.log").open("w")
    processes = [
        subprocess.Popen([REGISTRY, "serve", str(tmp_path / "config.yml")], env=env, stdout=logs, stderr=subprocess.STDOUT),
        subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main), "-g", "daemon off;"],
            stdout=logs, stderr=subprocess.STDOUT,
        ),
    ]
    try:
        _wait_for(ip, registry.PORT, processes[0], tmp_path / "processes.log")
        _wait_for(ip, https_port, processes[1], tmp_path / "processes.log")
        resolve = ["--resolve", f"{public}:{https_port}:{ip}", "--resolve", f"{public}:{http_port}:{ip}"]
        https = f"https://{public}:{https_port}"

        redirect = _curl(*resolve, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://{public}:{http_port}/v2/")
        assert redirect.stdout == f"301 https://{public}/v2/"
        assert _curl(*resolve, "-o", "/dev/null", "-w", "%{http_code}", f"{https}/v2/").stdout == "401"
        auth = ["-u", f"{registry.USERNAME}:{password}"]
        assert _curl(*resolve, *auth, "-o", "/dev/null", "-w", "%{http_code}", f"{https}/v2/").stdout == "200"

        # A 5 MiB blob upload through Nginx: no body limit, and the registry answers with public URLs.
        started = _curl(*resolve, *auth, "-X", "POST", "-D", "-", "-o", "/dev/null", f"{https}/v2/samarth/test/blobs/uploads/")
        location = next(line.split(" ", 1)[1].strip() for line in started.stdout.splitlines() if line.lower().startswith("location:"))
        assert location.startswith(f"https://{public}/v2/samarth/test/blobs/uploads/"), location
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom(5 * 1024 * 1024))
        digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        upload_url = location.replace(f"https://{public}/", f"{https}/") + ("&" if "?" in location else "?") + f"digest={digest}"
        put = _curl(*resolve, *auth, "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{blob}",
                    "-o", "/dev/null", "-w", "%{http_code}", upload_url)
        assert put.stdout == "201", put.stderr
        head = _curl(*resolve, *auth, "-I", "-o", "/dev/null", "-w", "%{http_code}", f"{https}/v2/samarth/test/blobs/{digest}")
        assert head.stdout == "200"

        # A name no route serves gets no certificate at all.
        unknown = _curl("--resolve", f"unknown.example.org:{https_port}:{ip}", f"https://unknown.example.org:{https_port}/")
        assert unknown.returncode != 0
        # The Vault UI answers only its allow-list; a loopback client is not on it.
        (vault,) = [r for r in config.edge.routes if r.upstream == "vault"]
        vault_status = _curl("--resolve", f"{vault.host}:{https_port}:{ip}", "-o", "/dev/null", "-w", "%{http_code}",
                             f"https://{vault.host}:{https_port}/ui/")
        assert vault_status.stdout == "403"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        logs.close()


def _wait_for(ip: str, port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"nothing listens on {ip}:{port}: {log.read_text() if log.exists() else ''}"
            time.sleep(0.1)
