"""Lab hosts on one Linux machine: booted Debian machines (``lab/machines.py``) on a bridge of their own.

A lab host is what a server is to the program: a private IPv4 (and IPv6) address on the lab's bridge,
systemd as PID 1, sshd with a non-root login (``samarth-devops``, passwordless sudo, in the ``docker``
group) and dockerd as a systemd service, its own root filesystem and a disk of its own. The lab's own
set-up (this module) reaches into a machine from outside: its files through the machine's root, its
dockerd through a second socket (``LabHost.docker_host``); nothing but the tests logs in over SSH, and
only as ``samarth-devops``.

The bridge carries a DNS resolver (dnsmasq on the bridge's address, the machines' only nameserver) that
answers each host's name and whatever ``Lab.add_dns_record`` adds. The lab has no route to the Internet.
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
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from components.services.databases.catalogue import ENGINES

from .machines import SSH_USER, LabError, Machine, checked, image_cached, locked, machine_image, mounts_under

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE = ROOT / "lab" / "state"
DEFAULT_PREFIX = "samlab"
DEFAULT_SUBNET = "10.231.0.0/24"
NETNS_DIR = Path("/var/run/netns")
# Docker sockets live here, not in the state directory: a unix socket path has at most 107 bytes.
RUN_DIR = Path("/run/samarth-lab")

# Debian package for every program the lab runs on this machine.
TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "dnsmasq": "dnsmasq-base",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "docker": "docker.io",
}
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
# Kernel-wide settings every machine sees as its own: at least these values on this machine (see _preflight).
KERNEL_MINIMUMS = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 1048576,
    # What the database engines ask of a server's kernel (the program's database-sysctls check).
    **{key.replace(".", "/"): value for engine in ENGINES.values() for key, value in engine.host_sysctl_minimums.items()},
}

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # interface names are at most 15 characters
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")


# The lab's "Internet": a network of two, the public host and one client (see ``Lab.public_client``).
# It is inside namespaces only, so it never meets this machine's own networks.
PUBLIC_SERVER, PUBLIC_CLIENT, PUBLIC_PREFIXLEN = "10.233.0.1", "10.233.0.2", 24


@dataclass(frozen=True)
class PublicClient:
    namespace: str
    address: str
    server_address: str  # the public host's address on this network

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the client's namespace."""
        return subprocess.run(["nsenter", f"--net={NETNS_DIR / self.namespace}", *argv],
                              capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    address6: str
    namespace: str
    docker_sock: Path
    ssh_key_path: Path
    known_hosts: Path
    ssh_config: Path  # an ssh_config(5) for all lab hosts, for the plain `ssh` client
    host_key: str  # the sshd's public host key, as a known_hosts / authorized_keys line body
    root: Path  # the machine's root filesystem, as this machine sees it while the machine exists
    user: str = SSH_USER

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_sock}"

    @property
    def host_key_file(self) -> Path:
        """The machine's ed25519 host public key."""
        return self.root / "etc/ssh/ssh_host_ed25519_key.pub"

    @property
    def hosts_file(self) -> Path:
        """The machine's /etc/hosts."""
        return self.root / "etc/hosts"

    @property
    def certs_dir(self) -> Path:
        """The machine's /etc/docker/certs.d: ``<registry>/ca.crt`` trusts a CA."""
        return self.root / "etc/docker/certs.d"

    @property
    def docker_config(self) -> Path:
        """The login user's ~/.docker: its own ``docker login`` credentials."""
        return self.root / "home" / self.user / ".docker"

    def add_host_name(self, name: str, address: str) -> None:
        """Resolve ``name`` to ``address`` on this machine only (its /etc/hosts)."""
        with self.hosts_file.open("a") as hosts:
            hosts.write(f"{address} {name}\n")

    def write_file(self, path: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
        """Write ``text`` to ``path`` on the machine (absolute path inside it), as its root would."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chown(target, owner, owner)
        target.chmod(mode)
        return target


def ssh_command(host: LabHost, *remote: str) -> list[str]:
    """The ``ssh`` argv that logs in to ``host`` as its login user with the lab key, checking its host key."""
    return [
        "ssh",
        "-i", str(host.ssh_key_path),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={host.known_hosts}",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
        f"{host.user}@{host.address}",
        *remote,
    ]


def ssh(host: LabHost, script: str, timeout: float = 300, sudo: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``sh -s`` on ``host`` over real SSH (through ``sudo -n`` when ``sudo``); the
    caller checks ``returncode``."""
    remote = ["sudo", "-n", "sh", "-s"] if sudo else ["sh", "-s"]
    return subprocess.run(ssh_command(host, *remote), input=script, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (the kernel's pick), for a daemon a test starts on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_command(host: LabHost, script: str, timeout: float = 120, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``script`` as the SSH session's command on ``host``, as a ``command.remote.Command`` runs its
    ``create`` or ``delete``, with ``stdin`` (the command's credentials) on its standard input; the caller
    checks ``returncode``."""
    return subprocess.run(ssh_command(host, script), input=stdin, capture_output=True, text=True, timeout=timeout)


def docker(host: LabHost, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the Docker CLI against ``host``'s daemon through the lab's socket."""
    return subprocess.run(
        ["docker", "-H", host.docker_host, *args], capture_output=True, text=True, timeout=timeout
    )


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))
        return "\n    ".join(text.splitlines()[-lines:])
    except OSError:
        return "(no log)"


def machine_lock() -> AbstractContextManager[None]:
    """Hold it from choosing a ``free_subnet`` until ``Lab.up`` has put it on a bridge, so two
    processes setting up labs at once do not pick the same subnet."""
    return locked(Path("/run/samarth-lab.lock"))


@contextmanager
def temporary_lab(names: Sequence[str], tag: str) -> Iterator[tuple[Lab, dict[str, LabHost]]]:
    """A lab of ``names`` for one run of a benchmark or a script: its own prefix (``tag`` and this
    process's id), a free subnet and a temporary state directory; down again when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"lab-{tag}-") as tmp:
        with machine_lock():
            lab = Lab(prefix=f"{tag}{os.getpid()}", subnet=free_subnet(), state_dir=Path(tmp) / "state", timeout=120)
            try:
                hosts = {h.name: h for h in lab.up(list(names))}
            except BaseException:
                lab.down()
                raise
        try:
            yield lab, hosts
        finally:
            lab.down()


def used_networks() -> list[ipaddress.IPv4Network]:
    out = checked(["ip", "-o", "-4", "addr", "show"], "listing addresses").stdout
    return [ipaddress.IPv4Interface(m).network for m in re.findall(r"\binet (\S+)", out)]


def free_subnet(pool: str = "10.232.0.0/16", prefixlen: int = 24) -> str:
    """A subnet of ``pool`` that no interface of the root namespace uses (hold ``machine_lock``)."""
    used = used_networks()
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=prefixlen):
        if not any(candidate.overlaps(n) for n in used):
            return str(candidate)
    raise LabError(f"no free /{prefixlen} left in {pool}: remove stale labs with `python -m lab down --prefix ...`")


def _ipv6_network(network: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    """A unique-local /64 made of the IPv4 subnet's first three octets, so two labs' bridges never share one."""
    a, b, c, _ = network.network_address.packed
    return ipaddress.IPv6Network(f"fd4c:6162:{a:x}{b:02x}:{c:x}::/64")


class Lab:
    """A set of lab machines sharing a bridge, a subnet, a client key and a state directory."""

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        subnet: str = DEFAULT_SUBNET,
        state_dir: Path = DEFAULT_STATE,
        timeout: float = 90.0,
    ) -> None:
        if not _PREFIX.match(prefix):
            raise LabError(f"prefix {prefix!r}: use 1-10 lowercase letters or digits, starting with a letter")
        network = ipaddress.IPv4Network(subnet)
        if not network.is_private:
            raise LabError(f"subnet {subnet} is not a private range (use e.g. {DEFAULT_SUBNET})")
        if network.num_addresses < 4:
            raise LabError(f"subnet {subnet} is too small")
        self.prefix = prefix
        self.network = network
        self.network6 = _ipv6_network(network)
        self.state_dir = Path(state_dir).resolve()
        self.timeout = timeout
        self.bridge = f"{prefix}-br"
        self.gateway = str(network.network_address + 1)
        self.gateway6 = str(self.network6.network_address + 1)
        self.key_path = self.state_dir / "id_ed25519"
        self.known_hosts = self.state_dir / "known_hosts"
        self.ssh_config = self.state_dir / "ssh_config"
        self.dns_hosts = self.state_dir / "dns-hosts"
        self._registry = self.state_dir / "lab.json"

    @classmethod
    def recorded(cls, prefix: str) -> Lab:
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
        return self.state_dir / "machines" / name

    def run_dir(self, name: str) -> Path:
        return RUN_DIR / self.prefix / name

    def machine(self, name: str) -> Machine:
        return Machine(self.host_dir(name), f"{self.prefix}-{name}", name, NETNS_DIR / self.namespace(name), self.run_dir(name))

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
        machine = self.machine(name)
        return LabHost(
            name=name,
            address=self._address(index),
            address6=str(self.network6.network_address + 2 + index),
            namespace=self.namespace(name),
            docker_sock=self.run_dir(name) / "docker.sock",
            ssh_key_path=self.key_path,
            known_hosts=self.known_hosts,
            ssh_config=self.ssh_config,
            host_key=machine.host_key,
            root=machine.root,
        )

    def hosts(self) -> list[LabHost]:
        """The hosts this lab's state records, in address order (whether running or not)."""
        return [self._host(n, i) for n, i in sorted(self._hosts_registry().items(), key=lambda kv: kv[1])]

    def host(self, name: str) -> LabHost:
        registry = self._hosts_registry()
        if name not in registry:
            raise LabError(f"no lab host {name!r} in lab {self.prefix}")
        return self._host(name, registry[name])

    # -- up --------------------------------------------------------------------------------------

    def up(self, names: Sequence[str], bare: bool = False) -> list[LabHost]:
        """Make sure ``names`` exist, are booted and answer (SSH login, and ``docker info`` unless
        ``bare``: no Docker at all); safe to run again. A machine keeps the kind it was created with."""
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
        # Built before the state lock is taken: a cold image takes minutes.
        images = {bare: machine_image(docker=not bare)}
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
            self._dns(registry)
            for name in names:
                machine = self.machine(name)
                kind = machine.bare if machine.directory.exists() else bare
                if kind not in images:
                    images[kind] = machine_image(docker=not kind)
                machine.create(images[kind], kind,
                               Path(f"{self.key_path}.pub").read_text(), self._hosts_text(name, registry[name]),
                               self.gateway)
                machine.start()
            hosts = [self._host(name, registry[name]) for name in names]
            self._write_client_files()
            self._wait(hosts)
        return hosts

    def _hosts_text(self, name: str, index: int) -> str:
        return f"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{self._address(index)} {name}\n"

    def reboot(self, name: str) -> LabHost:
        """A clean reboot of ``name`` (``systemctl reboot``'s path), waiting until it answers again."""
        host = self.host(name)
        machine = self.machine(name)
        before = machine.init_pid()
        machine.reboot()
        deadline = time.monotonic() + self.timeout
        while machine.init_pid() in (before, None):
            if time.monotonic() > deadline:
                raise LabError(f"lab host {name} did not reboot within {self.timeout:.0f}s: {machine.console}:\n    {_tail(machine.console)}")
            time.sleep(0.2)
        self._wait([host])
        return host

    def kill(self, name: str) -> None:
        """A power cut: every process of ``name`` killed at once; disk and files stay. ``up`` boots it."""
        self.host(name)
        self.machine(name).kill()

    def destroy(self, name: str) -> None:
        """``name`` gone for good: machine, disk and address; a later ``up`` of it makes a new machine."""
        self.host(name)
        with locked(self.state_dir / ".lock"):
            self.machine(name).destroy()
            registry = self._hosts_registry()
            index = registry.pop(name)
            if (NETNS_DIR / self.namespace(name)).exists():
                checked(["ip", "netns", "del", self.namespace(name)], f"deleting namespace {self.namespace(name)}")
            checked(["ip", "link", "del", self._veth(index)], "", check=False)
            shutil.rmtree(self.run_dir(name), ignore_errors=True)
            self._registry.write_text(json.dumps(registry, indent=2) + "\n")
            self._dns(registry)
            self._write_client_files()

    def restart_dockerd(self, host: LabHost) -> None:
        """Restart ``host``'s dockerd as a package upgrade would (``systemctl restart docker``)."""
        result = ssh(host, "systemctl restart docker && docker info --format '{{.ID}}' >/dev/null\n", sudo=True)
        if result.returncode != 0:
            raise LabError(f"lab host {host.name}: restarting dockerd failed: {result.stderr.strip()}")
        self._wait([host])

    def journal(self, name: str, unit: str) -> str:
        """``unit``'s journal on ``name``, read from outside the machine (reading it adds no SSH login).
        Everything logged before the call is in it: journald is asked to take in what it still has queued."""
        machine = self.machine(name)
        checked(machine.console_command(["journalctl", "--sync"]), f"lab host {name}: syncing the journal")
        argv = machine.console_command(["journalctl", "--no-pager", "-o", "cat", "-u", unit])
        return checked(argv, f"lab host {name}: reading the journal of {unit}").stdout

    def add_dns_record(self, name: str, address: str) -> None:
        """Make the lab's resolver answer ``name`` with ``address`` for every machine."""
        with locked(self.state_dir / ".lock"):
            with self.dns_hosts.open("a") as records:
                records.write(f"{address} {name}\n")
            self._reload_dns()

    def _preflight(self) -> None:
        reason = unavailable()
        if reason:
            raise LabError(reason)
        for directory in (NETNS_DIR, self.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o755)
        # The machines share this machine's kernel. Every machine's systemd, dbus and journald take inotify
        # instances from one budget (all run as this machine's root): Debian's default of 128 runs out at a
        # dozen machines. And a database server's kernel settings are this machine's.
        for setting, wanted in KERNEL_MINIMUMS.items():
            path = Path("/proc/sys") / setting
            if int(path.read_text()) < wanted:
                path.write_text(f"{wanted}\n")

    def _client_key(self) -> None:
        if not self.key_path.exists():
            checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{self.prefix}", "-f", str(self.key_path)],
                 "generating the lab's SSH key")
        sudo_uid, sudo_gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if sudo_uid and sudo_gid:
            # A newcomer runs `sudo python -m lab up` and then Pulumi as themselves: let them use the key.
            for path in (self.key_path, Path(f"{self.key_path}.pub")):
                os.chown(path, int(sudo_uid), int(sudo_gid))

    def _bridge(self) -> None:
        if checked(["ip", "link", "show", self.bridge], "", check=False).returncode != 0:
            checked(["ip", "link", "add", self.bridge, "type", "bridge"], f"creating bridge {self.bridge}")
        checked(["ip", "addr", "replace", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge],
             f"addressing bridge {self.bridge}")
        checked(["ip", "-6", "addr", "replace", f"{self.gateway6}/64", "dev", self.bridge, "nodad"],
             f"addressing bridge {self.bridge} (IPv6)")
        checked(["ip", "link", "set", self.bridge, "up"], f"bringing bridge {self.bridge} up")
        # With br_netfilter loaded, bridged frames traverse iptables' FORWARD chain, whose policy a
        # Docker daemon in the root namespace sets to DROP: let lab traffic through explicitly.
        if _program("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            if checked(["iptables", "-C", *rule], "", check=False).returncode != 0:
                checked(["iptables", "-I", *rule], f"allowing traffic on {self.bridge}", check=False)

    def _namespace(self, name: str, index: int) -> None:
        ns, veth, address = self.namespace(name), self._veth(index), self._address(index)
        address6 = str(self.network6.network_address + 2 + index)
        what = f"lab host {name}"
        if not (NETNS_DIR / ns).exists():
            checked(["ip", "netns", "add", ns], f"{what}: creating namespace {ns}")
        if checked(["ip", "link", "show", veth], "", check=False).returncode != 0:
            checked(["ip", "-n", ns, "link", "del", "eth0"], "", check=False)
            checked(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                 f"{what}: creating veth {veth}")
        checked(["ip", "link", "set", veth, "master", self.bridge, "up"], f"{what}: attaching {veth} to {self.bridge}")
        checked(["ip", "-n", ns, "link", "set", "lo", "up"], f"{what}: loopback")
        checked(["ip", "-n", ns, "addr", "replace", f"{address}/{self.network.prefixlen}", "dev", "eth0"],
             f"{what}: address {address}")
        checked(["ip", "-n", ns, "-6", "addr", "replace", f"{address6}/64", "dev", "eth0", "nodad"],
             f"{what}: address {address6}")
        checked(["ip", "-n", ns, "link", "set", "eth0", "up"], f"{what}: eth0 up")
        checked(["ip", "-n", ns, "route", "replace", "default", "via", self.gateway], f"{what}: default route")

    # -- DNS ---------------------------------------------------------------------------------------

    def _dns_pidfile(self) -> Path:
        return RUN_DIR / self.prefix / "dnsmasq.pid"

    def _dns_pid(self) -> Optional[int]:
        try:
            pid = int(self._dns_pidfile().read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"dnsmasq" in cmdline and self.bridge.encode() in cmdline else None

    def _dns(self, registry: dict[str, int]) -> None:
        """The resolver's host records: every lab host's name, then what ``add_dns_record`` added."""
        added = [line for line in (self.dns_hosts.read_text().splitlines() if self.dns_hosts.exists() else [])
                 if not line.endswith("# lab host")]
        hosts = [f"{self._address(i)} {n} # lab host" for n, i in sorted(registry.items(), key=lambda kv: kv[1])]
        self.dns_hosts.write_text("\n".join(hosts + added) + "\n")
        if self._dns_pid() is None:
            checked(["dnsmasq", "--conf-file=/dev/null", f"--interface={self.bridge}", "--bind-interfaces",
                  "--except-interface=lo", "--no-resolv", "--no-hosts", "--no-poll", f"--addn-hosts={self.dns_hosts}",
                  f"--pid-file={self._dns_pidfile()}", "--user=root", "--group=root", "--local-service"],
                 f"starting the lab's resolver on {self.bridge}")
        else:
            self._reload_dns()

    def _reload_dns(self) -> None:
        pid = self._dns_pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # dnsmasq reads its hosts files again

    # -- client files, waiting -------------------------------------------------------------------

    def _write_client_files(self) -> None:
        """known_hosts for the lab's host keys, and an ssh_config that a user's ~/.ssh/config can
        Include so the plain `ssh` client (the Docker CLI's ssh:// transport) reaches lab hosts."""
        hosts = self.hosts()
        self.known_hosts.write_text("".join(f"{h.address} {h.host_key}\n" for h in hosts if h.host_key))
        self.ssh_config.write_text(
            "# Written by `python -m lab up`: Include it at the top of ~/.ssh/config to reach the lab hosts.\n"
            f"Host {' '.join(h.address for h in hosts) or 'none'}\n"
            f"  User {SSH_USER}\n"
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
        """Until every host's systemd has finished booting, its login answers and (unless bare) its dockerd."""
        deadline = time.monotonic() + self.timeout
        pending = {h.name: {"systemd", "sshd"} | (set() if self.machine(h.name).bare else {"dockerd"}) for h in hosts}
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
                    console = self.machine(name).console
                    problems.append(
                        f"lab host {name} ({by_name[name].address}): no answer from {', '.join(sorted(waiting))} "
                        f"within {self.timeout:.0f}s; last lines of {console}:\n    {_tail(console)}"
                    )
                raise LabError("\n".join(problems))
            time.sleep(0.3)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        """Per host: address, whether its machine runs, systemd's state, SSH login and dockerd."""
        rows = []
        for host in self.hosts():
            machine = self.machine(host.name)
            running = machine.init_pid() is not None
            state = _system_state(host) if running else "off"
            rows.append({
                "name": host.name, "address": host.address, "machine": running, "systemd": state,
                "sshd": running and _ssh_answers(host),
                "dockerd": None if machine.bare else running and _docker_answers(host),
            })
        return rows

    # -- the public side ---------------------------------------------------------------------------

    def public_client(self, name: str) -> PublicClient:
        """A client on a public network of its own that reaches only ``name``'s public address, as a
        user on the Internet reaches the application server: a veth pair between the host (its
        ``eth1``) and a client namespace, whose default route points at that address. Nothing else
        of the lab is on this network, and the root namespace is not on it. Safe to call again."""
        host = self.host(name)
        client = PublicClient(namespace=f"{self.prefix}-client", address=PUBLIC_CLIENT, server_address=PUBLIC_SERVER)
        what = f"the public network of {name}"
        if not (NETNS_DIR / client.namespace).exists():
            checked(["ip", "netns", "add", client.namespace], f"{what}: creating namespace {client.namespace}")
        if checked(["ip", "-n", host.namespace, "link", "show", "eth1"], "", check=False).returncode != 0:
            checked(["ip", "-n", host.namespace, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
                  "netns", client.namespace], f"{what}: creating its veth pair")
        for ns, device, address in ((host.namespace, "eth1", client.server_address),
                                    (client.namespace, "eth0", client.address)):
            checked(["ip", "-n", ns, "addr", "replace", f"{address}/{PUBLIC_PREFIXLEN}", "dev", device], f"{what}: {address}")
            checked(["ip", "-n", ns, "link", "set", device, "up"], f"{what}: {device} up")
        checked(["ip", "-n", client.namespace, "link", "set", "lo", "up"], f"{what}: client loopback")
        checked(["ip", "-n", client.namespace, "route", "replace", "default", "via", client.server_address],
             f"{what}: client default route")
        return client

    # -- down ------------------------------------------------------------------------------------

    def down(self) -> None:
        """Power every machine off, then delete machines, disks, namespaces, veths, the bridge, the
        resolver and the state; safe to run again, and after a crash or a killed run."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (machines, network namespaces, bridges): run it as root")
        machines_dir = self.state_dir / "machines"
        names = {h.name for h in self.hosts()} | ({p.name for p in machines_dir.iterdir()} if machines_dir.is_dir() else set())
        machines = [self.machine(name) for name in sorted(names)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda m: m.stop(), machines))
        for machine in machines:
            machine.destroy()
        if (pid := self._dns_pid()) is not None:
            os.kill(pid, signal.SIGTERM)
        namespaces = {self.namespace(name) for name in names}
        if NETNS_DIR.exists():
            namespaces |= {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{self.prefix}-")}
        for ns in sorted(namespaces):
            for pid in _netns_pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if (NETNS_DIR / ns).exists():
                checked(["ip", "netns", "del", ns], f"deleting namespace {ns}")
        links = checked(["ip", "-o", "link", "show"], "listing links").stdout
        for veth in sorted(set(re.findall(rf"^\d+: ({re.escape(self.prefix)}-v\d+)[@:]", links, re.M))):
            checked(["ip", "link", "del", veth], "", check=False)
        if _program("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            while checked(["iptables", "-C", *rule], "", check=False).returncode == 0:
                checked(["iptables", "-D", *rule], f"removing the FORWARD rule for {self.bridge}")
        if checked(["ip", "link", "show", self.bridge], "", check=False).returncode == 0:
            checked(["ip", "link", "del", self.bridge], f"deleting bridge {self.bridge}")
        for directory in (self.state_dir, RUN_DIR / self.prefix):
            for target in mounts_under(directory):
                checked(["umount", "-l", target], "", check=False)
            shutil.rmtree(directory, ignore_errors=True)
            if directory.exists():
                raise LabError(f"could not remove {directory}: something under it is still mounted or busy")


def unavailable() -> Optional[str]:
    """Why no lab can start on this machine (not root, or programs missing), or None when one can."""
    if os.geteuid() != 0:
        return "the lab needs root (machines, network namespaces, bridges): run it as root"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if _program(tool) is None})
    if missing:
        return f"the lab needs programs that are missing: install them with `apt-get install -y {' '.join(missing)}`"
    return None


def image_cache_state() -> str:
    """``warm`` when the machine image is built, ``cold`` when the next ``up`` builds it (minutes)."""
    return "warm" if image_cached(docker=True) else "cold"


def _program(name: str) -> Optional[str]:
    # sudo and cron keep /usr/sbin off some users' PATH; the daemons live there.
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def _netns_pids(ns: str) -> list[int]:
    result = checked(["ip", "netns", "pids", ns], "", check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def _answers(host: LabHost, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` ("systemd", "sshd", "dockerd") answer on ``host`` right now."""
    answered = set()
    if "dockerd" in wanted and _docker_answers(host):
        answered.add("dockerd")
    if "sshd" in wanted and _ssh_answers(host):
        answered.add("sshd")
        if "systemd" in wanted and _system_state(host) in ("running", "degraded"):
            answered.add("systemd")
    return answered


def _docker_answers(host: LabHost) -> bool:
    try:
        return docker(host, "info", "--format", "{{.ID}}", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _system_state(host: LabHost) -> str:
    """``systemctl is-system-running`` on ``host`` (``unknown`` when it cannot be asked)."""
    try:
        result = subprocess.run(ssh_command(host, "systemctl", "is-system-running"), capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "unknown"
    return result.stdout.strip() or "unknown"


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

