"""Lab machines: booted Debian 12 systems with systemd as PID 1, run by ``systemd-nspawn``.

A machine is what a server is to the program: its own root filesystem, machine-id, host keys, users and
``/etc``; ``/var/lib/docker`` (and with it every Docker volume) on a fixed-size disk of its own; sshd,
and dockerd as a systemd service from Debian's ``docker.io`` (none on a ``bare`` machine); a non-root
login, ``samarth-devops``, with passwordless sudo and in the ``docker`` group, as the committed stacks
assume. What it shares with this machine (the kernel, its sysctls and modules, the clock) is listed in
docs/lab.md.

Layout, per machine, under the lab's state directory (``machines/<name>/``):

- ``upper/``: the machine's own changes over the image (an overlayfs upper layer), kept across reboots;
  the image's layers are read-only and shared by every machine of every lab on this machine;
- ``root/``: where that overlay is mounted while the machine exists, and ``-D`` of nspawn;
- ``disk.img``: a sparse ext4 file system, loop-mounted on ``disk/`` and bound to ``/var/lib/docker``
  (overlay2 cannot use an overlayfs upper layer, and disk-full drills need a disk per machine);
- ``console.log``: what the machine printed on its console, and each boot and exit of ``machine-run.sh``.

The network namespace is made outside the machine (``Lab._namespace``) and handed to nspawn
(``--network-namespace-path``): it outlives a reboot or a power cut as a server's NIC and address do.

Images (``machine_image``): one debootstrap of ``BASE_PACKAGES``, configured for the lab (``_configure_base``),
and a Docker layer over it with ``DOCKER_PACKAGES`` installed by apt in a chroot; both cached under
/var/cache/samarth-lab by a key of their package lists and set-up, so a change to either builds anew.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Optional

CACHE = Path("/var/cache/samarth-lab")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SSH_USER = "samarth-devops"
SSH_UID = 1000
MACHINE_RUN = Path(__file__).resolve().parent / "machine-run.sh"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "samarth-lab"
DISK_GIB = 8

# A server as the program finds it: what the rendered scripts call, sshd, sudo, and systemd (the lab tests and
# the rehearsal run the scripts on it). No Docker: that is the layer below.
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "openssh-sftp-server", "sudo",
    "iproute2", "iptables", "kmod", "ca-certificates", "procps", "curl", "python3", "openssl", "logrotate",
)
DOCKER_PACKAGES = ("docker.io",)
# Not needed to run anything: the package cache, lists, documentation and translations.
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale", "usr/share/man")

# What nspawn mounts read-only that a server's root may write: the cgroup v1 controllers (runc creates a
# cgroup per container; inside its cgroup namespace the machine sees only its own subtree) and
# /proc/sys/net (dockerd turns on IP forwarding; the network namespace is the machine's own). nspawn
# makes /proc/sys/net writable only for a network namespace it creates itself.
KERNEL_INTERFACES_UNIT = """[Unit]
Description=Lab: writable cgroup controllers and /proc/sys/net, as on a server
DefaultDependencies=no
Before=sysinit.target containerd.service docker.service
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec 'for d in /sys/fs/cgroup/*/; do mount -o remount,rw,bind "$d"; done'
ExecStart=/bin/sh -ec 'mount --bind /proc/sys/net /proc/sys/net; mount -o remount,rw,bind /proc/sys/net'

[Install]
WantedBy=sysinit.target
"""

# The lab's own way to the machine's dockerd from this machine: a second socket, in the directory
# bound from the host at /run/lab. The daemon is the one the program configures (/etc/docker/daemon.json).
LAB_SOCKET_DROP_IN = """[Socket]
ListenStream=/run/lab/docker.sock
"""

SSHD_LAB = """# The lab: keys only, and no root login (the lab's own set-up does not use SSH).
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
"""


class LabError(RuntimeError):
    """A machine or the lab could not be built, started or torn down; the message names the host and what failed."""


def checked(argv: Sequence[str], what: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; with ``check``, a non-zero exit raises LabError with ``what`` and the program's own words."""
    result = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise LabError(f"{what}: `{' '.join(argv)}` failed ({result.returncode}): {detail}")
    return result


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (made if missing) for the block: between processes, not threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- images ------------------------------------------------------------------------------------------


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _configure_base(root: Path) -> None:
    """What every lab machine has before its first boot: the login user with sudo, sshd without root
    login, no host keys or machine-id of the image's own (each machine gets its own)."""
    checked(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--uid", str(SSH_UID),
          "--user-group", SSH_USER], "image: adding the login user")
    sudoers = root / "etc/sudoers.d" / SSH_USER
    sudoers.write_text(f"{SSH_USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text(SSHD_LAB)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    unit = root / "etc/systemd/system/lab-kernel-interfaces.service"
    unit.write_text(KERNEL_INTERFACES_UNIT)
    wants = root / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)


def _configure_docker(root: Path) -> None:
    checked(["chroot", str(root), "usermod", "--append", "--groups", "docker", SSH_USER], "image: docker group")
    drop_in = root / "etc/systemd/system/docker.socket.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    (drop_in / "lab.conf").write_text(LAB_SOCKET_DROP_IN)


def _trim(root: Path) -> None:
    for path in TRIM:
        target = root / path
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()


def _build_base(directory: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing: apt-get install -y debootstrap")
    work = directory.with_name(directory.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    checked(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(work), MIRROR],
         f"image: debootstrap of {SUITE}")
    _configure_base(work)
    _trim(work)
    work.rename(directory)


def _build_layer(lower: Path, layer: Path, packages: Sequence[str]) -> None:
    """``packages`` installed by apt in a chroot over ``lower``; ``layer`` keeps only what changed."""
    partial = layer.with_name(layer.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    upper, work, merged = partial / "upper", partial / "work", partial / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    checked(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
         "image: mounting the layer being built")
    try:
        shutil.copy("/etc/resolv.conf", merged / "etc/resolv.conf")
        (merged / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")  # no service starts in the chroot
        (merged / "usr/sbin/policy-rc.d").chmod(0o755)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
        checked(["chroot", str(merged), "apt-get", "update", "-qq"], "image: apt-get update in the chroot", env=env)
        checked(["chroot", str(merged), "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
             f"image: installing {' '.join(packages)}", env=env)
        (merged / "usr/sbin/policy-rc.d").unlink()
        (merged / "etc/resolv.conf").unlink()
        _configure_docker(merged)
        _trim(merged)
    finally:
        checked(["umount", str(merged)], "image: unmounting the layer", check=False)
    shutil.rmtree(work)
    merged.rmdir()
    upper.rename(partial.parent / (layer.name + ".upper"))
    shutil.rmtree(partial)
    (partial.parent / (layer.name + ".upper")).rename(layer)


def _layers(docker: bool) -> list[Path]:
    """Where the image's layers live, uppermost first (overlayfs' ``lowerdir`` order)."""
    base = CACHE / f"machine-{SUITE}-{_key(SUITE, BASE_PACKAGES, TRIM, inspect.getsource(_configure_base), SSHD_LAB, KERNEL_INTERFACES_UNIT)}"
    if not docker:
        return [base]
    layer = base.with_name(f"{base.name}-docker-{_key(DOCKER_PACKAGES, inspect.getsource(_configure_docker), LAB_SOCKET_DROP_IN)}")
    return [layer, base]


def machine_image(docker: bool = True) -> list[Path]:
    """The image's layers, uppermost first, built once and then reused."""
    layers = _layers(docker)
    with locked(CACHE / ".lock"):
        base = layers[-1]
        if not base.exists():
            _build_base(base)
        if docker and not layers[0].exists():
            _build_layer(base, layers[0], DOCKER_PACKAGES)
        _prune(keep=set(_layers(docker=True)))
    return layers


def _prune(keep: set[Path]) -> None:
    """Delete images of an older set-up that no mounted machine uses (each is a few hundred MiB)."""
    mounts = Path("/proc/self/mounts").read_text()
    for image in CACHE.glob(f"machine-{SUITE}-*"):
        if image not in keep and not image.name.endswith(".partial") and str(image) not in mounts:
            shutil.rmtree(image, ignore_errors=True)


def image_cached(docker: bool = True) -> bool:
    """Whether ``machine_image(docker)`` would find every layer built (CI says whether its cache was cold)."""
    return all(layer.exists() for layer in _layers(docker))


# -- cgroups -----------------------------------------------------------------------------------------


def _hierarchies() -> list[Path]:
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and (p / "cgroup.procs").exists())


def make_cgroup(machine: str) -> str:
    """The machine's cgroup in every hierarchy (``samarth-lab/<machine>``), relative to each hierarchy's root."""
    relative = f"{CGROUP_PARENT}/{machine}"
    for hierarchy in _hierarchies():
        for part in (CGROUP_PARENT, relative):
            directory = hierarchy / part
            if not directory.exists():
                directory.mkdir()
                # A new cpuset has no CPUs or memory nodes: nothing could join it.
                for setting in ("cpuset.cpus", "cpuset.mems"):
                    if (directory / setting).exists():
                        (directory / setting).write_text((directory.parent / setting).read_text())
    return relative


def _cgroups_of(machine: str) -> list[Path]:
    """The machine's cgroups in every hierarchy, deepest first. The machine's own systemd makes and
    removes cgroups under its own while this walks: what vanishes meanwhile is skipped."""
    found = []
    for hierarchy in _hierarchies():
        for directory, _, _ in os.walk(hierarchy / CGROUP_PARENT / machine):
            found.append(Path(directory))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(machine: str) -> set[int]:
    """Every process in the machine's cgroup, in any hierarchy, nested cgroups included."""
    pids: set[int] = set()
    for directory in _cgroups_of(machine):
        with suppress(OSError):
            pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
    return pids


def remove_cgroup(machine: str) -> None:
    """Remove the machine's cgroups, deepest first (a cgroup with processes left stays: kill them first)."""
    for directory in _cgroups_of(machine):
        _rmdir(directory)


def _rmdir(directory: Path) -> None:
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LabError(f"cgroup {directory} could not be removed ({exc}): a process of the machine is still in it") from None


# -- one machine -------------------------------------------------------------------------------------


class Machine:
    """One lab machine's files and processes; ``Lab`` decides its name, namespace and address."""

    def __init__(self, directory: Path, name: str, hostname: str, namespace_path: Path, lab_run_dir: Path) -> None:
        self.directory = directory
        self.name = name  # unique on this machine: the lab's prefix and the host name
        self.hostname = hostname
        self.namespace_path = namespace_path
        self.lab_run_dir = lab_run_dir  # bound at /run/lab inside: the lab's Docker socket
        self.root = directory / "root"
        self.disk = directory / "disk"
        self.disk_image = directory / "disk.img"
        self.console = directory / "console.log"
        self.pidfile = directory / "machine-run.pid"

    # -- files ---------------------------------------------------------------------------------------

    @property
    def bare(self) -> bool:
        return (self.directory / "bare").exists()

    def create(self, layers: Sequence[Path], bare: bool, authorized_key: str, hosts: str, nameserver: str) -> None:
        """The machine's own root and disk on first use; mounted again (files kept) after a stop."""
        first = not (self.directory / "upper").exists()
        for d in ("upper", "work", "root", "disk"):
            (self.directory / d).mkdir(parents=True, exist_ok=True)
        if first and bare:
            (self.directory / "bare").touch()
        (self.directory / "layers").write_text("\n".join(str(p) for p in layers) + "\n")
        if not self.disk_image.exists():
            with open(self.disk_image, "wb") as image:
                image.truncate(DISK_GIB << 30)
            checked(["mkfs.ext4", "-q", "-F", "-L", "lab-disk", "-E", "lazy_itable_init=1,lazy_journal_init=1",
                  str(self.disk_image)], f"machine {self.name}: making its disk")
        self.mount(layers)
        if first:
            self._first_files(authorized_key, hosts, nameserver)

    def mount(self, layers: Sequence[Path]) -> None:
        if not _mounted(self.root):
            lower = ":".join(str(p) for p in layers)
            checked(["mount", "-t", "overlay", "overlay", "-o",
                  f"lowerdir={lower},upperdir={self.directory / 'upper'},workdir={self.directory / 'work'}",
                  str(self.root)], f"machine {self.name}: mounting its root")
        if not _mounted(self.disk):
            checked(["mount", "-o", "loop", str(self.disk_image), str(self.disk)], f"machine {self.name}: mounting its disk")

    def _first_files(self, authorized_key: str, hosts: str, nameserver: str) -> None:
        etc = self.root / "etc"
        (etc / "hostname").write_text(f"{self.hostname}\n")
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (etc / "hosts").write_text(hosts)
        resolv = etc / "resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text(f"nameserver {nameserver}\n")
        checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.hostname}",
              "-f", str(etc / "ssh/ssh_host_ed25519_key")], f"machine {self.name}: its host key")
        ssh_dir = self.root / "home" / SSH_USER / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(authorized_key)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, SSH_UID, SSH_UID)
        (ssh_dir / "authorized_keys").chmod(0o600)

    @property
    def host_key(self) -> str:
        key = self.root / "etc/ssh/ssh_host_ed25519_key.pub"
        return " ".join(key.read_text().split()[:2]) if key.exists() else ""

    # -- processes -----------------------------------------------------------------------------------

    def supervisor(self) -> Optional[int]:
        """The pid of this machine's ``machine-run.sh``, if it runs."""
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if MACHINE_RUN.name.encode() in cmdline and self.name.encode() in cmdline else None

    def init_pid(self) -> Optional[int]:
        """The host pid of the machine's PID 1 (systemd), if it is booted."""
        for pid in cgroup_pids(self.name):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            # Exactly one PID namespace below ours: a container's PID 1 inside the machine is one further down.
            if len(nspid) == _own_pid_depth() + 1 and nspid[-1] == "1":
                return pid
        return None

    def console_command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run as the machine's root from outside it, as on its console (no SSH login)."""
        pid = self.init_pid()
        if pid is None:
            raise LabError(f"machine {self.name} is not booted")
        return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv]

    def start(self) -> None:
        """Boot the machine unless it runs; returns at once (``Lab`` waits for SSH and dockerd)."""
        if self.supervisor() is not None:
            return
        cgroup = make_cgroup(self.name)
        argv = [
            "sh", str(MACHINE_RUN), cgroup, str(self.namespace_path),
            "--boot", f"--directory={self.root}", f"--machine={self.name}", f"--hostname={self.hostname}",
            "--register=no", "--keep-unit", "--link-journal=no", "--console=read-only",
            "--resolv-conf=off", "--timezone=off",
            f"--network-namespace-path={self.namespace_path}",
            # runc needs the kernel keyring, which nspawn's default filter denies.
            "--capability=all", "--system-call-filter=@keyring bpf",
            f"--bind={self.disk}:/var/lib/docker", f"--bind={self.lab_run_dir}:/run/lab",
        ]
        self.lab_run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.console, "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.pidfile.write_text(f"{process.pid}\n")

    def reboot(self) -> None:
        """A clean reboot: SIGINT to systemd is ctrl-alt-del, which reboots; nspawn then exits 133 and
        ``machine-run.sh`` boots the machine again, disk and files kept."""
        pid = self.init_pid()
        if pid is None:
            raise LabError(f"machine {self.name} is not booted")
        os.kill(pid, signal.SIGINT)

    def stop(self, timeout: float = 30) -> None:
        """A clean poweroff (SIGTERM to nspawn halts the machine), then a power cut if it hangs."""
        supervisor = self.supervisor()
        nspawn = _children(supervisor) if supervisor else []
        if supervisor:
            os.kill(supervisor, signal.SIGTERM)  # the loop must not boot it again
        for pid in nspawn:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while cgroup_pids(self.name) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()

    def kill(self) -> None:
        """A power cut: every process of the machine killed at once; its files are as they were."""
        supervisor = self.supervisor()
        if supervisor:
            _kill(supervisor, signal.SIGKILL)
        for _ in range(50):
            pids = cgroup_pids(self.name)
            if not pids:
                break
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        else:
            raise LabError(f"machine {self.name}: processes {sorted(cgroup_pids(self.name))} survived SIGKILL")
        self.pidfile.unlink(missing_ok=True)
        remove_cgroup(self.name)

    def unmount(self) -> None:
        """Unmount the disk and the root (everything under the machine's directory, deepest first)."""
        for target in mounts_under(self.directory):
            checked(["umount", "-l", target], f"machine {self.name}: unmounting {target}", check=False)

    def destroy(self) -> None:
        self.kill()
        self.unmount()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.directory.exists():
            raise LabError(f"could not remove {self.directory}: something under it is still mounted or busy")


def _own_pid_depth() -> int:
    status = Path("/proc/self/status").read_text()
    return len(next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")))


def mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    targets = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix) or target == str(directory):
            targets.append(target)
    return sorted(targets, key=len, reverse=True)


def _mounted(path: Path) -> bool:
    return str(path) in {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()}


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for t in Path(f"/proc/{pid}/task").iterdir() for p in (t / "children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
