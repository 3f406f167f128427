"""The earlier lab: network namespaces with their own sshd and dockerd, sharing this machine's filesystem.

Kept only for the backup and restore drills (lab/backup_drill.py), whose installer stand-ins (a recording
``systemctl``, repositories reached as root) still assume this lab; every other lab test runs on the
machines of lab/core.py, which log in as the servers' non-root user under systemd. Its hosts are
``lab.LabHost`` values whose root is this machine's ``/`` and whose login is root.


A lab host looks like a server of the deployment from the outside: its own private IPv4 address on
a bridge in the root namespace, SSH with key login as root, and a Docker daemon that SSH sessions
reach (``DOCKER_HOST`` is set per host by its sshd), so ``docker -H ssh://root@<address>`` and the
program's remote scripts land on that host's daemon. Everything else (filesystem, users, the Docker
client's ``~/.docker/config.json``) is shared with the machine: see the README's "The lab" section.

Daemons are started with ``nsenter --net`` rather than ``ip netns exec``: the latter remounts /sys,
after which dockerd fails with "Devices cgroup isn't mounted". Each daemon also gets its own UTS
namespace so its hostname (and ``docker info``'s Name, and the swarm node's hostname) is the host's
name, as on separate machines.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from .core import PUBLIC_CLIENT, PUBLIC_PREFIXLEN, PUBLIC_SERVER, LabError, LabHost, PublicClient, docker, ssh_command
from .machines import locked

ROOT = Path(__file__).resolve().parents[1]
NETNS_DIR = Path("/var/run/netns")
# Sockets live here, not in the state directory: a unix socket path has at most 107 bytes, and
# containerd's socket is nested deep in dockerd's exec root.
RUN_DIR = Path("/run/samarth-lab-namespaces")

# Debian package for every program the lab runs.
TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setsid": "util-linux",
    "hostname": "hostname",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "sshd": "openssh-server",
    "dockerd": "docker.io",
    "docker": "docker.io",
}
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # interface names are at most 15 characters
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")


def _run(argv: Sequence[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"{what}: `{' '.join(argv)}` failed ({result.returncode}): {detail}")
    return result


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pid_from(pidfile: Path, marker: str) -> Optional[int]:
    """The live process recorded in ``pidfile`` whose command line mentions ``marker``, if any."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline and _alive(pid) else None


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n    ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NamespaceLab:
    """A set of lab hosts sharing a bridge, a subnet, a client key and a state directory."""

    def __init__(self, prefix: str, subnet: str, state_dir: Path, timeout: float = 60.0) -> None:
        if not _PREFIX.match(prefix):
            raise LabError(f"prefix {prefix!r}: use 1-10 lowercase letters or digits, starting with a letter")
        network = ipaddress.IPv4Network(subnet)
        if not network.is_private:
            raise LabError(f"subnet {subnet} is not a private range (use e.g. 10.231.0.0/24)")
        if network.num_addresses < 4:
            raise LabError(f"subnet {subnet} is too small")
        self.prefix = prefix
        self.network = network
        self.state_dir = Path(state_dir).resolve()
        self.timeout = timeout
        self.bridge = f"{prefix}-br"
        self.gateway = str(network.network_address + 1)
        self.key_path = self.state_dir / "id_ed25519"
        self.known_hosts = self.state_dir / "known_hosts"
        self.authorized_keys = self.state_dir / "authorized_keys"
        self.ssh_config = self.state_dir / "ssh_config"
        self._registry = self.state_dir / "lab.json"

    @classmethod
    def recorded(cls, prefix: str) -> NamespaceLab:
        """The lab that ``up`` made with ``prefix``, as it recorded itself under /run: lets whoever
        finds a lab abandoned by its owner tear it down, state directory included."""
        try:
            record = json.loads((RUN_DIR / prefix / "lab.json").read_text())
            return cls(prefix, record["subnet"], Path(record["stateDir"]))
        except (OSError, ValueError, KeyError) as exc:
            raise LabError(f"no record of lab {prefix} under {RUN_DIR}: {exc}") from None

    # -- layout ----------------------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def host_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name

    def run_dir(self, name: str) -> Path:
        return RUN_DIR / self.prefix / name

    def _veth(self, index: int) -> str:
        return f"{self.prefix}-v{index}"

    def _address(self, index: int) -> str:
        address = self.network.network_address + 2 + index
        if address >= self.network.broadcast_address:
            raise LabError(f"subnet {self.network} has no address left for host #{index + 1}")
        return str(address)

    def _hosts_registry(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in json.loads(self._registry.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _host(self, name: str, index: int) -> LabHost:
        key_file = self.host_dir(name) / "ssh_host_ed25519_key.pub"
        host_key = " ".join(key_file.read_text().split()[:2]) if key_file.exists() else ""
        return LabHost(
            name=name,
            address=self._address(index),
            address6="",
            namespace=self.namespace(name),
            docker_sock=self.run_dir(name) / "docker.sock",
            ssh_key_path=self.key_path,
            known_hosts=self.known_hosts,
            ssh_config=self.ssh_config,
            host_key=host_key,
            root=Path("/"),
            user="root",
        )

    def hosts(self) -> list[LabHost]:
        """The hosts this lab's state records, in address order (whether running or not)."""
        return [self._host(n, i) for n, i in sorted(self._hosts_registry().items(), key=lambda kv: kv[1])]

    # -- up --------------------------------------------------------------------------------------

    def up(self, names: Sequence[str]) -> list[LabHost]:
        """Make sure ``names`` exist and answer (SSH login and ``docker info``); safe to run again."""
        if not names:
            raise LabError("no host names given")
        for name in names:
            if not _NAME.match(name):
                raise LabError(f"host name {name!r}: use lowercase letters, digits and '-', starting with a letter")
        if len(set(names)) != len(names):
            raise LabError(f"host names repeat: {', '.join(names)}")
        self._preflight()
        (RUN_DIR / self.prefix).mkdir(parents=True, exist_ok=True)
        (RUN_DIR / self.prefix / "lab.json").write_text(
            json.dumps({"stateDir": str(self.state_dir), "subnet": str(self.network)}) + "\n"
        )
        with locked(self.state_dir / ".lock"):
            registry = self._hosts_registry()
            for name in names:
                if name not in registry:
                    taken = set(registry.values())
                    registry[name] = next(i for i in range(len(taken) + 1) if i not in taken)
            self._address(max(registry.values()))
            self._registry.write_text(json.dumps(registry, indent=2) + "\n")
            self._client_key()
            self._bridge()
            for name in names:
                self._namespace(name, registry[name])
            hosts = [self._start(name, registry[name]) for name in names]
            self._write_client_files()
            self._wait(hosts)
        return hosts

    def restart_dockerd(self, host: LabHost) -> None:
        """Stop ``host``'s dockerd as a reboot or a package upgrade would, and start it again."""
        pid = int((self.host_dir(host.name) / "docker.pid").read_text())
        subprocess.run(["kill", str(pid)], check=True)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.2)
        else:
            raise LabError(f"dockerd {pid} on {host.name} did not stop")
        self.up([host.name])

    def _preflight(self) -> None:
        reason = namespaces_unavailable()
        if reason:
            raise LabError(reason)
        for directory in (Path("/run/sshd"), NETNS_DIR, self.state_dir, Path("/etc/docker/certs.d")):
            directory.mkdir(parents=True, exist_ok=True)
        # sshd refuses to start without its privilege separation directory, root-owned, not group/world-writable.
        os.chmod("/run/sshd", 0o755)
        os.chmod(self.state_dir, 0o755)

    def _client_key(self) -> None:
        if not self.key_path.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{self.prefix}", "-f", str(self.key_path)],
                 "generating the lab's SSH key")
        self.authorized_keys.write_text(Path(f"{self.key_path}.pub").read_text())
        sudo_uid, sudo_gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if sudo_uid and sudo_gid:
            # A newcomer runs `sudo python -m lab up` and then Pulumi as themselves: let them use the key.
            for path in (self.key_path, Path(f"{self.key_path}.pub")):
                os.chown(path, int(sudo_uid), int(sudo_gid))

    def _bridge(self) -> None:
        if _run(["ip", "link", "show", self.bridge], "", check=False).returncode != 0:
            _run(["ip", "link", "add", self.bridge, "type", "bridge"], f"creating bridge {self.bridge}")
        _run(["ip", "addr", "replace", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge],
             f"addressing bridge {self.bridge}")
        _run(["ip", "link", "set", self.bridge, "up"], f"bringing bridge {self.bridge} up")
        # With br_netfilter loaded, bridged frames traverse iptables' FORWARD chain, whose policy a
        # Docker daemon in the root namespace sets to DROP: let lab traffic through explicitly.
        if _program("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            if _run(["iptables", "-C", *rule], "", check=False).returncode != 0:
                _run(["iptables", "-I", *rule], f"allowing traffic on {self.bridge}", check=False)

    def _namespace(self, name: str, index: int) -> None:
        ns, veth, address = self.namespace(name), self._veth(index), self._address(index)
        what = f"lab host {name}"
        if not (NETNS_DIR / ns).exists():
            _run(["ip", "netns", "add", ns], f"{what}: creating namespace {ns}")
        if _run(["ip", "link", "show", veth], "", check=False).returncode != 0:
            _run(["ip", "-n", ns, "link", "del", "eth0"], "", check=False)
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                 f"{what}: creating veth {veth}")
        _run(["ip", "link", "set", veth, "master", self.bridge, "up"], f"{what}: attaching {veth} to {self.bridge}")
        _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"{what}: loopback")
        _run(["ip", "-n", ns, "addr", "replace", f"{address}/{self.network.prefixlen}", "dev", "eth0"],
             f"{what}: address {address}")
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"], f"{what}: eth0 up")
        _run(["ip", "-n", ns, "route", "replace", "default", "via", self.gateway], f"{what}: default route")

    def _in_host(self, host: LabHost, argv: Sequence[str]) -> list[str]:
        # nsenter, not `ip netns exec` (see the module docstring); unshare gives the daemon its hostname.
        return ["nsenter", f"--net={NETNS_DIR / host.namespace}", "unshare", "--uts",
                "sh", "-c", 'hostname "$0" && exec "$@"', host.name, *argv]

    def _own_files(self, host: LabHost) -> list[str]:
        """The dockerd's own mount namespace, in which its /etc/hosts and /etc/docker/certs.d are the
        host's files (a registry's name and CA are per machine); the rest is shared with this machine."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/docker/certs.d && shift && exec "$@"',
                str(self.host_dir(host.name) / "etc-hosts"), str(self.host_dir(host.name) / "certs.d")]

    def _start(self, name: str, index: int) -> LabHost:
        """Start the host's sshd and dockerd unless they already run."""
        d = self.host_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        self.run_dir(name).mkdir(parents=True, exist_ok=True)
        key = d / "ssh_host_ed25519_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
                 f"lab host {name}: generating its host key")
        (d / "sshd_config").write_text(
            "\n".join(
                [
                    f"HostKey {key}",
                    f"PidFile {d / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    # The key files live in the repository checkout, whose owner is not root.
                    "StrictModes no",
                    "AcceptEnv LANG LC_*",
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                    "",
                ]
            )
        )
        # Not the machine's /etc/docker/daemon.json; and not its /etc/docker/key.json either, which
        # would give every lab daemon the same engine ID.
        # Kept across restarts, as a server's daemon.json: what else is in it stays (log defaults...).
        daemon_json = d / "daemon.json"
        settings = json.loads(daemon_json.read_text()) if daemon_json.exists() else {}
        daemon_json.write_text(json.dumps({**settings, "deprecated-key-path": str(d / "key.json")}) + "\n")
        host = self._host(name, index)

        if _pid_from(d / "sshd.pid", str(d / "sshd_config")) is None:
            _run(
                self._in_host(host, [
                    _program("sshd") or "sshd", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log"),
                    "-o", f"ListenAddress={host.address}",
                    "-o", f"SetEnv=DOCKER_HOST={host.docker_host} DOCKER_CONFIG={d / 'docker-client'}",
                ]),
                f"lab host {host.name}: starting sshd (log {d / 'sshd.log'})",
            )
        if _pid_from(d / "docker.pid", str(d / "docker.pid")) is None:
            if not (d / "etc-hosts").exists():
                (d / "etc-hosts").write_text(f"127.0.0.1 localhost\n{host.address} {name}\n")
            (d / "certs.d").mkdir(exist_ok=True)
            (d / "docker-client").mkdir(exist_ok=True)
            with open(d / "dockerd.log", "ab") as log:
                subprocess.run(
                    ["setsid", "-f", *self._in_host(host, [
                        *self._own_files(host),
                        _program("dockerd") or "dockerd",
                        "--config-file", str(d / "daemon.json"),
                        "--data-root", str(d / "data"),
                        "--exec-root", str(self.run_dir(host.name) / "exec"),
                        "--pidfile", str(d / "docker.pid"),
                        "-H", host.docker_host,
                        "--storage-driver=vfs",
                    ])],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                )
        return host

    def _write_client_files(self) -> None:
        """known_hosts for the lab's host keys, and an ssh_config that a user's ~/.ssh/config can
        Include so the plain `ssh` client (the Docker CLI's ssh:// transport) reaches lab hosts."""
        hosts = self.hosts()
        self.known_hosts.write_text("".join(f"{h.address} {h.host_key}\n" for h in hosts if h.host_key))
        self.ssh_config.write_text(
            "# Written by `python -m lab up`: Include it at the top of ~/.ssh/config to reach the lab hosts.\n"
            f"Host {' '.join(h.address for h in hosts)}\n"
            "  User root\n"
            f"  IdentityFile {self.key_path}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  StrictHostKeyChecking yes\n"
        )
        sudo_uid, sudo_gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if sudo_uid and sudo_gid:
            for path in (self.known_hosts, self.ssh_config):
                os.chown(path, int(sudo_uid), int(sudo_gid))

    def _wait(self, hosts: Sequence[LabHost]) -> None:
        deadline = time.monotonic() + self.timeout
        pending = {h.name: {"sshd", "dockerd"} for h in hosts}
        by_name = {h.name: h for h in hosts}
        while True:
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(pool.map(lambda n, wanted=pending: (n, _answers(by_name[n], wanted[n])), list(pending)))
            for name, answered in answers:
                pending[name] -= answered
            pending = {n: w for n, w in pending.items() if w}
            if not pending:
                return
            if time.monotonic() > deadline:
                problems = []
                for name, waiting in sorted(pending.items()):
                    d = self.host_dir(name)
                    for daemon in sorted(waiting):
                        log = d / f"{daemon}.log"
                        check = "SSH login" if daemon == "sshd" else "`docker info`"
                        problems.append(
                            f"lab host {name} ({by_name[name].address}): {daemon} did not answer {check} "
                            f"within {self.timeout:.0f}s; last lines of {log}:\n    {_tail(log)}"
                        )
                raise LabError("\n".join(problems))
            time.sleep(0.3)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        rows = []
        for host in self.hosts():
            d = self.host_dir(host.name)
            namespace = (NETNS_DIR / host.namespace).exists()
            sshd = namespace and _pid_from(d / "sshd.pid", str(d / "sshd_config")) is not None and _ssh_answers(host)
            dockerd = namespace and _docker_answers(host)
            rows.append({"name": host.name, "address": host.address, "namespace": namespace,
                         "sshd": sshd, "dockerd": dockerd})
        return rows

    # -- the public side ---------------------------------------------------------------------------

    def public_client(self, name: str) -> PublicClient:
        """A client on a public network of its own that reaches only ``name``'s public address, as a
        user on the Internet reaches the application server: a veth pair between the host (its
        ``eth1``) and a client namespace, whose default route points at that address. Nothing else
        of the lab is on this network, and the root namespace is not on it. Safe to call again."""
        host = next((h for h in self.hosts() if h.name == name), None)
        if host is None:
            raise LabError(f"no lab host {name!r}: start it first")
        client = PublicClient(namespace=f"{self.prefix}-client", address=PUBLIC_CLIENT, server_address=PUBLIC_SERVER)
        what = f"the public network of {name}"
        if not (NETNS_DIR / client.namespace).exists():
            _run(["ip", "netns", "add", client.namespace], f"{what}: creating namespace {client.namespace}")
        if _run(["ip", "-n", host.namespace, "link", "show", "eth1"], "", check=False).returncode != 0:
            _run(["ip", "-n", host.namespace, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
                  "netns", client.namespace], f"{what}: creating its veth pair")
        for ns, device, address in ((host.namespace, "eth1", client.server_address),
                                    (client.namespace, "eth0", client.address)):
            _run(["ip", "-n", ns, "addr", "replace", f"{address}/{PUBLIC_PREFIXLEN}", "dev", device], f"{what}: {address}")
            _run(["ip", "-n", ns, "link", "set", device, "up"], f"{what}: {device} up")
        _run(["ip", "-n", client.namespace, "link", "set", "lo", "up"], f"{what}: client loopback")
        _run(["ip", "-n", client.namespace, "route", "replace", "default", "via", client.server_address],
             f"{what}: client default route")
        return client

    # -- down ------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every daemon, delete namespaces, veths, the bridge and the state; safe to run again."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, bridges): run it as root")
        namespaces = {self.namespace(h.name) for h in self.hosts()}
        if NETNS_DIR.exists():
            namespaces |= {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{self.prefix}-")}
        self._stop(sorted(namespaces))
        self._unmount_under(self.state_dir)
        self._unmount_under(RUN_DIR / self.prefix)
        for ns in sorted(namespaces):
            if (NETNS_DIR / ns).exists():
                _run(["ip", "netns", "del", ns], f"deleting namespace {ns}")
        links = _run(["ip", "-o", "link", "show"], "listing links").stdout
        for veth in sorted(set(re.findall(rf"^\d+: ({re.escape(self.prefix)}-v\d+)[@:]", links, re.M))):
            _run(["ip", "link", "del", veth], "", check=False)
        if _program("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            while _run(["iptables", "-C", *rule], "", check=False).returncode == 0:
                _run(["iptables", "-D", *rule], f"removing the FORWARD rule for {self.bridge}")
        if _run(["ip", "link", "show", self.bridge], "", check=False).returncode == 0:
            _run(["ip", "link", "del", self.bridge], f"deleting bridge {self.bridge}")
        for directory in (self.state_dir, RUN_DIR / self.prefix):
            shutil.rmtree(directory, ignore_errors=True)
            if directory.exists():
                raise LabError(f"could not remove {directory}: something under it is still mounted or busy")

    def _stop(self, namespaces: Sequence[str]) -> None:
        """dockerd first (it stops its containers), then whatever else runs in the namespaces."""
        dockerds = [
            pid for ns in namespaces
            if (pid := _pid_from(self.host_dir(ns[len(self.prefix) + 1:]) / "docker.pid", "dockerd")) is not None
        ]
        _signal(dockerds, signal.SIGTERM)
        _wait_gone(dockerds, 20)
        pids = [pid for ns in namespaces for pid in _netns_pids(ns)]
        _signal(pids, signal.SIGTERM)
        if not _wait_gone(pids, 5):
            _signal(pids, signal.SIGKILL)
            _wait_gone(pids, 5)

    def _unmount_under(self, directory: Path) -> None:
        # dockerd bind-mounts namespace files and container shm under its exec/data roots; an
        # interrupted daemon leaves them behind and rmtree would fail on them.
        prefix = f"{directory}/"
        mounts = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                mounts.append(target)
        for target in sorted(mounts, key=len, reverse=True):
            _run(["umount", "-l", target], "", check=False)


def namespaces_unavailable() -> Optional[str]:
    """Why no lab can start on this machine (not root, or programs missing), or None when one can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, bridges): run it as root"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if _program(tool) is None})
    if missing:
        return f"the lab needs programs that are missing: install them with `apt-get install -y {' '.join(missing)}`"
    return None


def _program(name: str) -> Optional[str]:
    # sudo and cron keep /usr/sbin off some users' PATH; the daemons live there.
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def _netns_pids(ns: str) -> list[int]:
    result = _run(["ip", "netns", "pids", ns], "", check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def _signal(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: Sequence[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _answers(host: LabHost, daemons: set[str]) -> set[str]:
    """Which of ``daemons`` ("sshd", "dockerd") answer on ``host`` right now."""
    answered = set()
    if "dockerd" in daemons and _docker_answers(host):
        answered.add("dockerd")
    if "sshd" in daemons and _ssh_answers(host):
        answered.add("sshd")
    return answered


def _docker_answers(host: LabHost) -> bool:
    try:
        return docker(host, "info", "--format", "{{.ID}}", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _ssh_answers(host: LabHost) -> bool:
    try:
        with socket.create_connection((host.address, 22), timeout=2):
            pass
    except OSError:
        return False
    try:
        return subprocess.run(ssh_command(host, "true"), capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False
