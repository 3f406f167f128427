"""Every image the lab stack pins, served from the lab (lab/rehearsal_images.py) on the lab machine that runs
it, and run as the program declares it: each container of the lab stack's registrations (the program under
mocks, servers on the lab machines) created through the machine's Docker Engine API with the arguments the
Docker provider passes (image, name, hostname, env, command, ports, volumes, uploads, capabilities,
network, memory, restart, logs, healthcheck), after the program's remote commands it depends on and before
those that depend on it (a Postgres major-version check, Nginx's directory, certificates and config, Vault's
init and unseal, the password checks), each run over SSH as `pulumi up` runs it. Docker's own healthcheck,
with the registered test, interval and retries, must report the container healthy; real software must also
answer its protocol from this machine or inside, and run as the official image's user.

What the mocks stand in for is made real first, as the rehearsal makes it: the TLS keys and certificates
(pulumi-tls) and the registry's bcrypt hash (pulumi-random) uploaded into containers; Vault's init output
for its unseal. Not run here: the swarm's registry logins (tests/lab/test_rehearsal_lab.py), the certificate
renewal (no ACME directory), Vault's audit rotation and the database sysctls check (host settings, not the
image's), and the MinIO provider's resources (its S3 is the rehearsal's stand-in).
"""

from __future__ import annotations

import datetime
import http.client
import io
import ipaddress
import json
import re
import shlex
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.stand_ins import declared_script
from lab import LabHost, docker, ssh, ssh_command
from lab.rehearsal_images import RECIPES, ServedImage, serve, split_reference
from lab.swarm import lab_program
from tests.support.lab_fixture import LabSession
from tools.offline import COMMAND, CONTAINER, IMAGE, PASSWORD, ProgramRun, Registration, reveal, stack_deployment

# One container of each image the lab stack runs, by container name, on the machine that runs it.
CONTAINERS = {
    "nginx": "application", "registry": "application", "vault": "application", "minio": "application",
    "postgres-odk-adapter": "db2", "redis-odk-adapter": "db2", "rabbitmq-yaus": "db2", "opensearch-fusionauth": "db2",
}
# The program's remote commands run around a container here (by the script they declare); the others are
# named in the module's docstring.
SCRIPTS = {"postgres-major-check", "nginx-directory", "certificates-install", "nginx-reload", "vault-init",
           "vault-unseal", "password"}


# -- the Docker Engine API, as the provider calls it -------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine(host: LabHost, method: str, path: str, body: Any = None, tar: Optional[bytes] = None) -> Any:
    connection = _UnixConnection(str(host.docker_sock))
    headers = {"Content-Type": "application/x-tar" if tar is not None else "application/json"}
    payload = tar if tar is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, payload, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    assert response.status < 300, f"{method} {path}: {response.status} {data.decode(errors='replace')}"
    return json.loads(data) if data else None


def _nanoseconds(duration: str) -> int:
    value, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()  # type: ignore[union-attr]
    return int(value) * (60 if unit == "m" else 1) * 10**9


def create_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The container create request for a ``docker.Container``'s inputs."""
    check = inputs["healthcheck"]
    ports = inputs.get("ports") or []
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        key = f"{int(port['internal'])}/{port.get('protocol') or 'tcp'}"
        bindings.setdefault(key, []).append({"HostIp": port.get("ip") or "", "HostPort": str(int(port["external"]))})
    binds = [f"{v.get('volumeName') or v['hostPath']}:{v['containerPath']}{':ro' if v.get('readOnly') else ''}"
             for v in inputs.get("volumes") or []]
    memory = int(inputs["memory"]) * 2**20
    return {
        "Image": inputs["image"],
        "Hostname": inputs.get("hostname") or "",
        "Env": list(inputs.get("envs") or []),
        "Cmd": list(inputs["command"]) if inputs.get("command") else None,
        "ExposedPorts": {key: {} for key in bindings},
        "Healthcheck": {
            "Test": list(check["tests"]), "Interval": _nanoseconds(check["interval"]), "Timeout": _nanoseconds(check["timeout"]),
            "StartPeriod": _nanoseconds(check["startPeriod"]), "Retries": int(check["retries"]),
        },
        "HostConfig": {
            "Binds": binds,
            "PortBindings": bindings,
            "NetworkMode": inputs.get("networkMode") or "bridge",
            "Memory": memory,
            "MemorySwap": int(inputs["memorySwap"]) * 2**20 if inputs.get("memorySwap") else 0,
            "CapAdd": list((inputs.get("capabilities") or {}).get("adds") or []),
            "RestartPolicy": {"Name": inputs.get("restart") or "no"},
            "LogConfig": {"Type": inputs.get("logDriver") or "json-file", "Config": dict(inputs.get("logOpts") or {})},
        },
    }


def uploads_tar(uploads: Sequence[Mapping[str, Any]]) -> bytes:
    """The uploads as the provider sends them: one archive, each file at its path with its owner and mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for upload in uploads:
            data = str(upload["content"]).encode()
            info = tarfile.TarInfo(str(upload["file"]).lstrip("/"))
            info.size, info.mode = len(data), int(upload.get("permissions") or "0644", 8)
            info.uid, info.gid = int(upload.get("owner") or 0), int(upload.get("group") or 0)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- what the mocks stand in for, made real -----------------------------------------------------------


def output(registration: Registration, key: str) -> Any:
    """An output the mocks reported, secret or not."""
    return reveal(registration.outputs[key])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _name(subject: Mapping[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"])])


def real_values(run: ProgramRun) -> dict[str, str]:
    """Each stand-in value of the run that ends up in a container -> a real one: ECDSA keys, the CA and the
    certificates it signs (with the request's names), and the bcrypt hash of each generated password."""
    real: dict[str, str] = {}
    keys: dict[str, ec.EllipticCurvePrivateKey] = {}
    for registration in run.of_type("tls:index/privateKey:PrivateKey"):
        keys[output(registration, "privateKeyPem")] = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificates: dict[str, x509.Certificate] = {}
    for ca in run.of_type("tls:index/selfSignedCert:SelfSignedCert"):
        inputs, key = ca.plain_inputs, keys[ca.plain_inputs["privateKeyPem"]]
        certificates[output(ca, "certPem")] = (
            x509.CertificateBuilder().subject_name(_name(inputs["subject"])).issuer_name(_name(inputs["subject"]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
        )
    requests = {output(r, "certRequestPem"): r.plain_inputs for r in run.of_type("tls:index/certRequest:CertRequest")}
    for signed in run.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        inputs = signed.plain_inputs
        request, ca_cert = requests[inputs["certRequestPem"]], certificates[inputs["caCertPem"]]
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in request.get("dnsNames") or []]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in request.get("ipAddresses") or []]
        certificates[output(signed, "certPem")] = (
            x509.CertificateBuilder().subject_name(_name(request["subject"])).issuer_name(ca_cert.subject)
            .public_key(keys[request["privateKeyPem"]].public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(keys[inputs["caPrivateKeyPem"]], hashes.SHA256())
        )
    real.update({stand_in: _pem_key(key) for stand_in, key in keys.items()})
    real.update({stand_in: c.public_bytes(serialization.Encoding.PEM).decode() for stand_in, c in certificates.items()})
    for password in run.of_type(PASSWORD):
        digest = bcrypt.hashpw(output(password, "result").encode(), bcrypt.gensalt(rounds=4)).decode()
        real[output(password, "bcryptHash")] = digest.replace("$2b$", "$2a$", 1)
    return real


def made_real(value: str, real: Mapping[str, str]) -> str:
    for stand_in, replacement in list(real.items()):
        value = value.replace(stand_in, replacement)
    return value


# -- the containers, deployed -------------------------------------------------------------------------


@dataclass
class Deployed:
    name: str
    host: LabHost
    container: Registration
    reference: str
    served: Optional[ServedImage] = None
    health: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    error: str = ""

    def exec(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", self.host.docker_host, "exec", "-i", self.name, *argv],
                              input=stdin, capture_output=True, text=True, timeout=120)

    def env(self, key: str) -> str:
        (value,) = [e.split("=", 1)[1] for e in self.container.plain_inputs.get("envs") or [] if e.startswith(f"{key}=")]
        return value

    def port(self, internal: int) -> tuple[str, int]:
        (port,) = [p for p in self.container.plain_inputs["ports"] if int(p["internal"]) == internal]
        return str(port["ip"]), int(port["external"])


@dataclass
class Stack:
    run: ProgramRun
    deployed: dict[str, Deployed]


def _image_of(run: ProgramRun, container: Registration) -> str:
    (image,) = [run.by_urn[u] for u in container.dependencies if u in run.by_urn and run.by_urn[u].type == IMAGE]
    return str(image.plain_inputs["name"])


def _commands(run: ProgramRun, container: Registration) -> tuple[list[Registration], list[Registration]]:
    """The commands of ``SCRIPTS`` the container depends on, and those that depend on it (in registration order)."""
    ran = [r for r in run.of_type(COMMAND) if declared_script(r.plain_inputs) in SCRIPTS]
    return ([r for r in ran if r.urn in container.dependencies], [r for r in ran if container.urn in r.dependencies])


def remote(host: LabHost, script: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``script`` as a remote command's ``create`` runs: the SSH session's command, ``stdin`` on its input."""
    return subprocess.run(ssh_command(host, script), input=stdin, capture_output=True, text=True, timeout=300)


def _remote(deployed: Deployed, command: Registration, real: Mapping[str, str]) -> None:
    result = remote(deployed.host, command.plain_inputs["create"], made_real(str(command.plain_inputs.get("stdin") or ""), real))
    deployed.commands[command.name] = result
    assert result.returncode == 0, f"{command.name}: {result.stderr[-1500:]}"


def deploy(deployed: Deployed, run: ProgramRun, real: dict[str, str]) -> None:
    """What `pulumi up` does for the container: the image, its volumes, the commands before it, the
    container (created, files uploaded, started), the commands after it, Docker's healthcheck."""
    deployed.served = serve(deployed.host, deployed.reference)
    inputs = dict(deployed.container.plain_inputs)
    image_id = engine(deployed.host, "GET", f"/images/{deployed.reference}/json")["Id"]
    for volume in inputs.get("volumes") or []:
        if volume.get("volumeName"):
            engine(deployed.host, "POST", "/volumes/create", {"Name": volume["volumeName"]})
    before, after = _commands(run, deployed.container)
    for command in before:
        _remote(deployed, command, real)
    created = engine(deployed.host, "POST", f"/containers/create?name={deployed.name}", create_body({**inputs, "image": image_id}))
    uploads = [{**u, "content": made_real(str(u["content"]), real)} for u in inputs.get("uploads") or []]
    if uploads:
        engine(deployed.host, "PUT", f"/containers/{created['Id']}/archive?path=/", tar=uploads_tar(uploads))
    engine(deployed.host, "POST", f"/containers/{created['Id']}/start")
    started = time.monotonic()
    for command in after:
        if declared_script(command.plain_inputs) == "password":
            continue  # after the container is healthy (the provider waits for it: `wait`)
        _remote(deployed, command, real)
        if declared_script(command.plain_inputs) == "vault-init":
            stand_in = json.loads(output(command, "stdout"))
            init = json.loads(deployed.commands[command.name].stdout)
            real.update(zip(stand_in["unseal_keys_b64"], init["unseal_keys_b64"], strict=True))
    check = inputs["healthcheck"]
    deadline = started + (_nanoseconds(check["startPeriod"]) + _nanoseconds(check["interval"]) * (int(check["retries"]) + 1)) / 1e9
    while True:
        state = engine(deployed.host, "GET", f"/containers/{deployed.name}/json")["State"]
        deployed.health = state.get("Health") or {}
        if deployed.health.get("Status") in ("healthy", "unhealthy") or not state["Running"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    if deployed.health.get("Status") == "healthy":
        for command in after:
            if declared_script(command.plain_inputs) == "password":
                _remote(deployed, command, real)


@pytest.fixture(scope="module")
def stack(lab_session: LabSession) -> Iterator[Stack]:
    run = lab_program({h.name: h for h in lab_session.hosts})
    real = real_values(run)
    by_name = {c.plain_inputs["name"]: c for c in run.of_type(CONTAINER)}
    deployed = {name: Deployed(name, lab_session.host(host), by_name[name], _image_of(run, by_name[name]))
                for name, host in CONTAINERS.items()}

    def attempt(item: Deployed) -> None:
        try:
            deploy(item, run, real)
        except Exception as error:  # reported by the container's own test
            item.error = f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=len(deployed)) as pool:
        list(pool.map(attempt, deployed.values()))
    yield Stack(run, deployed)
    # Other modules of this test process share the lab: the containers and volumes go, and what the
    # commands before Nginx left on its host (config and certificate directories, the certificates script).
    for item in deployed.values():
        docker(item.host, "rm", "-f", item.name)
        for volume in item.container.plain_inputs.get("volumes") or []:
            if volume.get("volumeName"):
                docker(item.host, "volume", "rm", volume["volumeName"])
    nginx = deployed["nginx"]
    left = [v["hostPath"] for v in nginx.container.plain_inputs["volumes"] if v.get("hostPath")]
    for command in _commands(run, nginx.container)[0]:
        left += [shlex.split(value)[0] for value in re.findall(r"^(?:ACME_DIR|SCRIPT_PATH)=(.+)$", command.plain_inputs["create"], re.M)]
    ssh(nginx.host, f"rm -rf {shlex.join(left)}\n", sudo=True)


def _healthy(stack: Stack, name: str) -> Deployed:
    deployed = stack.deployed[name]
    assert not deployed.error, deployed.error
    log = [entry.get("Output", "") for entry in deployed.health.get("Log", [])][-2:]
    assert deployed.health.get("Status") == "healthy", f"{name}: {deployed.health.get('Status')}; last checks: {log}; " \
        f"logs: {docker(deployed.host, 'logs', '--tail', '20', name).stderr[-1500:]}"
    assert deployed.served is not None
    recipe = RECIPES[split_reference(deployed.reference)[0]]
    assert deployed.served.kind == recipe.kind
    if recipe.server_uid is not None:
        assert deployed.exec("stat", "-c", "%u", "/proc/1").stdout.strip() == str(recipe.server_uid), "the server's user"
    return deployed


def test_every_container_of_the_lab_stack_is_covered(stack: Stack) -> None:
    """The containers here run every image the lab stack's containers run."""
    references = {_image_of(stack.run, c) for c in stack.run.of_type(CONTAINER)}
    assert references == {d.reference for d in stack.deployed.values()}


def test_serving_again_changes_nothing(stack: Stack) -> None:
    """Every image is already there, built from the same recipe: served again as it is, quickly."""
    started = time.monotonic()
    for deployed in stack.deployed.values():
        before = docker(deployed.host, "image", "inspect", "--format", "{{.Id}}", deployed.reference).stdout
        assert serve(deployed.host, deployed.reference) == deployed.served
        assert docker(deployed.host, "image", "inspect", "--format", "{{.Id}}", deployed.reference).stdout == before
    assert time.monotonic() - started < 10


def test_postgres(stack: Stack) -> None:
    """The major-version check passes on the fresh volume; superuser, password and database from the
    environment; password authentication over the published port; the password check passes."""
    pg = _healthy(stack, "postgres-odk-adapter")
    user, database, password = pg.env("POSTGRES_USER"), pg.env("POSTGRES_DB"), pg.env("POSTGRES_PASSWORD")
    assert pg.exec("psql", "-U", user, "-d", database, "-AtXc", "select current_user").stdout.strip() == user
    ip, port = pg.port(5432)
    remote = subprocess.run(["psql", f"host={ip} port={port} user={user} dbname={database} password={password}", "-AtXc", "select 1"],
                            capture_output=True, text=True, timeout=30)
    assert remote.stdout.strip() == "1", remote.stderr
    wrong = subprocess.run(["psql", f"host={ip} port={port} user={user} dbname={database} password=wrong", "-AtXc", "select 1"],
                           capture_output=True, text=True, timeout=30)
    assert "password authentication failed" in wrong.stderr
    assert set(pg.commands) == {"db2-postgres-odk-adapter-major-check", "db2-postgres-odk-adapter-password"}


def test_redis(stack: Stack) -> None:
    """The uploaded config (owned by 999, mode 0400) is read: a password is required on the published port."""
    redis = _healthy(stack, "redis-odk-adapter")
    ip, port = redis.port(6379)
    ping = subprocess.run(["redis-cli", "-h", ip, "-p", str(port), "ping"], capture_output=True, text=True, timeout=30,
                          env={"REDISCLI_AUTH": redis.env("REDISCLI_AUTH")})
    assert ping.stdout.strip() == "PONG"
    refused = subprocess.run(["redis-cli", "-h", ip, "-p", str(port), "ping"], capture_output=True, text=True, timeout=30)
    assert "NOAUTH" in refused.stdout + refused.stderr
    assert redis.exec("redis-cli", "--no-auth-warning", "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]
    assert "db2-redis-odk-adapter-password" in redis.commands


def test_rabbitmq(stack: Stack) -> None:
    """The user, password and vhost from the environment; AMQP answers on the published port."""
    rabbit = _healthy(stack, "rabbitmq-yaus")
    assert rabbit.exec("rabbitmqctl", "-q", "status").returncode == 0
    assert rabbit.env("RABBITMQ_DEFAULT_VHOST") in rabbit.exec("rabbitmqctl", "-q", "list_vhosts").stdout.split()
    ip, port = rabbit.port(5672)
    with socket.create_connection((ip, port), timeout=10) as connection:
        connection.sendall(b"AMQP\x00\x00\x09\x01")
        frame = connection.recv(7)
    assert frame[:3] == b"\x01\x00\x00", frame  # a method frame on channel 0: Connection.Start
    assert "db2-rabbitmq-yaus-password" in rabbit.commands


def test_nginx(stack: Stack) -> None:
    """The program's config installed by its reload script (nginx -t in the container), placeholder
    certificates from its installer; HTTP on the public port redirects."""
    nginx = _healthy(stack, "nginx")
    assert nginx.exec("nginx", "-t").returncode == 0
    assert set(nginx.commands) == {"nginx-directory", "nginx-certificates-install", "nginx-reload"}
    answer = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{nginx.host.address}/"],
                            capture_output=True, text=True, timeout=30)
    assert answer.stdout == "301"


def test_registry(stack: Stack) -> None:
    """/v2/ on the published port: 401 without credentials, 200 with the generated ones (htpasswd upload)."""
    registry = _healthy(stack, "registry")
    ip, port = registry.port(5000)
    (password,) = [output(p, "result") for p in stack.run.of_type(PASSWORD) if p.name == "registry-password"]
    htpasswd = next(u["content"] for u in registry.container.plain_inputs["uploads"] if u["file"].endswith("htpasswd"))
    user = htpasswd.split(":", 1)[0]
    for credentials, status in (([], "401"), (["-u", f"{user}:{password}"], "200")):
        answer = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *credentials, f"http://{ip}:{port}/v2/"],
                                capture_output=True, text=True, timeout=30)
        assert answer.stdout == status


def test_vault(stack: Stack, tmp_path: Path) -> None:
    """The program's init and unseal scripts against it; unsealed and active over TLS with the CA."""
    vault = _healthy(stack, "vault")
    assert set(vault.commands) == {"application-vault-init", "application-vault-unseal"}
    status = json.loads(vault.exec("vault", "status", "-format=json").stdout)
    assert status["initialized"] and not status["sealed"]
    assert vault.exec("stat", "-c", "%u %g %a", "/vault/tls/key.pem").stdout.strip() == "100 1000 400"
    ca = tmp_path / "ca.pem"
    ca.write_text(vault.exec("cat", "/vault/tls/ca.pem").stdout)
    health = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca), f"https://{vault.host.address}:8200/v1/sys/health"]
    deadline = time.monotonic() + 30
    while (answer := subprocess.run(health, capture_output=True, text=True, timeout=30)).stdout != "200":
        assert time.monotonic() < deadline, f"sys/health: {answer.stdout} {answer.stderr}"
        time.sleep(0.5)


def test_minio_stand_in(stack: Stack) -> None:
    """Both published ports answer; the data volume holds the stand-in's note."""
    minio = _healthy(stack, "minio")
    ip, port = minio.port(9000)
    live = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}:{port}/minio/health/live"],
                          capture_output=True, text=True, timeout=30)
    assert live.stdout == "200"
    with socket.create_connection(minio.port(9090), timeout=10):
        pass
    assert "stand-in" in minio.exec("cat", "/data/.samarth-stand-in").stdout


def test_opensearch_stand_in(stack: Stack) -> None:
    """The healthcheck's curl with its credentials file; the program's password check passes, and fails
    for another password."""
    search = _healthy(stack, "opensearch-fusionauth")
    assert "db2-opensearch-fusionauth-password" in search.commands
    (check,) = [c for c in stack.run.of_type(COMMAND) if c.name == "db2-opensearch-fusionauth-password"]
    refused = remote(search.host, check.plain_inputs["create"], "notthepassword\n")
    assert refused.returncode != 0 and "does not accept the current password" in refused.stderr
    ip, port = search.port(9200)
    answer = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}:{port}/_cluster/health"],
                            capture_output=True, text=True, timeout=30)
    assert answer.stdout == "401"


@pytest.mark.parametrize("key, path", [("restic", "/usr/bin/restic"), ("rclone", "/usr/local/bin/rclone")])
def test_the_backup_installer_copies_the_binary_out_of_the_image(lab_session: LabSession, key: str, path: str) -> None:
    """What backup-install.sh does with the pinned image (`versions.restic`, `versions.rclone`): `docker
    create`, `docker cp` of the binary onto the server; the copy runs there."""
    reference = getattr(stack_deployment("staging").config.versions, key)
    db2 = lab_session.host("db2")
    served = serve(db2, reference)
    copied = ssh(db2, f'c=$(docker create {reference}) && docker cp "$c:{path}" /tmp/{key} && docker rm "$c" >/dev/null '
                      f"&& /tmp/{key} version\n")
    assert copied.returncode == 0, copied.stderr
    assert served.software.split()[-1] in copied.stdout


def test_the_certificate_script_runs_lego_from_the_image(lab_session: LabSession) -> None:
    """samarth-certificates runs `docker run --rm ... <versions.lego> <arguments>`: the image's entry point is
    lego, with the flags the script passes (Debian builds it without a version: it says `dev`)."""
    reference = stack_deployment("staging").config.versions.lego
    application = lab_session.host("application")
    serve(application, reference)
    version = ssh(application, f"docker run --rm --network host {reference} --version\n")
    assert version.returncode == 0 and version.stdout.startswith("lego version"), version.stderr
    usage = ssh(application, f"docker run --rm --network host {reference} --help\n").stdout
    assert all(flag in usage for flag in ("--path", "--server", "--email", "--accept-tos", "--key-type", "--http.webroot", "--domains"))
