"""Container images for lab hosts, built from Debian's packages: no registry is reachable from the lab.

``debian_rootfs`` debootstraps a minimal Debian (``--variant=minbase``) with the packages asked for into
a tarball, once per package list (cached under /var/cache/samarth-lab, shared by concurrent test runs
through a lock); ``import_image`` loads it into a lab host's daemon with ``docker import``.

The services image (one rootfs, one ``docker import`` per lab host, so CI builds and loads it once):
Debian bookworm's PostgreSQL 15 (the platform runs the official ``postgres:16`` image; dumps and
restores go through the same pg_dump/pg_restore options on both), Debian's Redis 7.0 (the platform runs
the official ``redis:7.4``; the RDB and append-only formats the restore relies on are the same) and
Debian's restic 0.14 at /usr/bin/restic, the path restic's official image uses, so the backup installer
copies restic out of it exactly as it does out of ``versions.restic`` on the servers; likewise Debian's
rclone 1.60, also at /usr/local/bin/rclone where rclone's official image (``versions.rclone``) has it.
Its entry point
does for ``redis-server`` what the official Redis image's does, and runs any other command as given
(by default the Postgres entry point below).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from .core import LabError, LabHost, docker

CACHE = Path("/var/cache/samarth-lab")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SERVICE_PACKAGES = ("postgresql-15", "redis-server", "restic", "rclone")
# Debian's path -> the path the official image of ``versions.<name>`` uses, copied into the rootfs.
OFFICIAL_PATHS = {"usr/bin/rclone": "usr/local/bin/rclone"}
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
# Not needed to run anything in the lab: the package cache, documentation, translations, and the LLVM
# that PostgreSQL's JIT loads (the entry point starts Postgres with jit=off).
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale", "usr/share/man",
        "usr/lib/x86_64-linux-gnu/libLLVM-14.so.1", "usr/lib/x86_64-linux-gnu/libz3.so.4",
        "usr/lib/postgresql/15/lib/llvmjit.so", "usr/lib/postgresql/15/lib/bitcode")

# PID 1 of the lab's Postgres containers: what the official image's entrypoint does that the backup
# scripts rely on (POSTGRES_USER is the superuser, POSTGRES_DB exists, local connections are trusted,
# the server is PID 1), with data checksums on.
POSTGRES_ENTRYPOINT = f"""#!/bin/sh
set -eu
export PATH={POSTGRES_BIN}:$PATH
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o postgres -g postgres -m 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  setpriv --reuid=postgres --regid=postgres --init-groups \\
    initdb --data-checksums -U "$POSTGRES_USER" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  echo "CREATE DATABASE \\"$POSTGRES_DB\\" OWNER \\"$POSTGRES_USER\\";" \\
    | setpriv --reuid=postgres --regid=postgres --init-groups postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses= -c jit=off
"""

# A stand-in for the official Redis image's entry point: `redis-server` as root first gives the working
# directory (WORKDIR /data) to the redis user, then runs as that user; the Debian package's redis user
# stands in for the image's uid 999. The pinned image's own entry point could not be read here
# (docs/upstreams.md, redis): the restore gives its files to redis itself, so it does not rely on this part.
SERVICES_ENTRYPOINT = """#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \\! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
"""


def _build(packages: Sequence[str], tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing: apt-get install -y debootstrap")
    work = tarball.with_suffix(".rootfs")
    shutil.rmtree(work, ignore_errors=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(work), MIRROR],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise LabError(f"debootstrap of {', '.join(packages)} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    for path in TRIM:
        target = work / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for debian, official in OFFICIAL_PATHS.items():
        if (work / debian).exists():
            shutil.copy2(work / debian, work / official)
    for name, text in (("lab-postgres", POSTGRES_ENTRYPOINT), ("docker-entrypoint.sh", SERVICES_ENTRYPOINT)):
        entrypoint = work / "usr/local/bin" / name
        entrypoint.write_text(text)
        entrypoint.chmod(0o755)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(work), "--numeric-owner", "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(work)


def debian_rootfs(packages: Sequence[str] = SERVICE_PACKAGES) -> Path:
    """A tarball of a minimal Debian with ``packages``, built once and then reused."""
    key = hashlib.sha256(
        f"{SUITE} {' '.join(sorted(packages))} {POSTGRES_ENTRYPOINT} {SERVICES_ENTRYPOINT} {TRIM} {OFFICIAL_PATHS}".encode()
    ).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    with open(CACHE / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            _build(packages, tarball)
    return tarball


def import_image(host: LabHost, tarball: Path, name: str, changes: Sequence[str]) -> None:
    """``docker import`` the tarball into ``host``'s daemon as ``name`` unless it is there already."""
    if docker(host, "image", "inspect", name).returncode == 0:
        return
    args = [arg for change in changes for arg in ("--change", change)]
    result = docker(host, "import", *args, str(tarball), name, timeout=600)
    if result.returncode != 0:
        raise LabError(f"lab host {host.name}: docker import of {tarball} failed: {result.stderr}")


def import_services(host: LabHost, name: str = "samarth-lab/services:bookworm") -> str:
    """The services image on ``host``: Postgres by default, Redis with ``redis-server ...`` as command."""
    import_image(
        host,
        debian_rootfs(),
        name,
        [
            f"ENV PATH={POSTGRES_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PGDATA=/var/lib/postgresql/data",
            "WORKDIR /data",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["/usr/local/bin/lab-postgres"]',
        ],
    )
    return name



# RabbitMQ without a debootstrap (Erlang would add about a minute to every CI run's image build): Debian's
# rabbitmq-server and Erlang as installed on this machine (tools/test-packages.txt), the shared libraries
# they load, and busybox for the scripts' shell and tools, in a small image. Like the official image
# (docker-library/rabbitmq: ENV HOME=/var/lib/rabbitmq, so `docker exec ... rabbitmqctl` finds the Erlang
# cookie the server wrote there; CMD rabbitmq-server), but the server runs as root.
RABBITMQ_TREES = ("/usr/lib/erlang", "/usr/lib/rabbitmq")


def _elf_libraries(trees: Sequence[str]) -> set[str]:
    """The shared libraries (and the loader) the ELF files under ``trees`` load."""
    elves = []
    for tree in trees:
        for path in Path(tree).rglob("*"):
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as handle:
                    if handle.read(4) == b"\x7fELF":
                        elves.append(str(path))
    libraries: set[str] = set()
    for elf in elves:
        result = subprocess.run(["ldd", elf], capture_output=True, text=True)
        libraries |= {word for word in result.stdout.split() if word.startswith("/") and ".so" in word}
    return libraries


def import_rabbitmq(host: LabHost, name: str = "samarth-lab/rabbitmq:bookworm") -> str:
    """The RabbitMQ image on ``host`` (made from this machine's Debian packages), once per daemon."""
    if docker(host, "image", "inspect", name).returncode == 0:
        return name
    busybox = shutil.which("busybox")
    if busybox is None or not Path(RABBITMQ_TREES[1]).is_dir():
        raise LabError("the RabbitMQ lab image needs busybox-static and rabbitmq-server: apt-get install -y busybox-static rabbitmq-server")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("tmp", "bin", "usr", "usr/bin", "etc", "var", "var/lib", "var/lib/rabbitmq", "var/log", "var/log/rabbitmq"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in (a for a in applets if a != "busybox"):
            for directory in ("bin", "usr/bin"):
                link = tarfile.TarInfo(f"{directory}/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "/bin/busybox"
                tar.addfile(link)
        for tree in RABBITMQ_TREES:
            tar.add(tree, arcname=tree.lstrip("/"))
        for library in sorted(_elf_libraries(RABBITMQ_TREES)):
            tar.add(os.path.realpath(library), arcname=library.lstrip("/"))
        for path, text in {"etc/passwd": "root:x:0:0:root:/var/lib/rabbitmq:/bin/sh\n", "etc/group": "root:x:0:\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    changes = [
        "ENV PATH=/usr/lib/rabbitmq/bin:/usr/lib/erlang/bin:/usr/bin:/bin",
        "ENV HOME=/var/lib/rabbitmq",
        'CMD ["rabbitmq-server"]',
    ]
    args = [arg for change in changes for arg in ("--change", change)]
    result = subprocess.run(["docker", "-H", host.docker_host, "import", *args, "-", name], input=buffer.getvalue(), capture_output=True)
    if result.returncode != 0:
        raise LabError(f"lab host {host.name}: docker import of the RabbitMQ image failed: {result.stderr.decode(errors='replace')}")
    return name
