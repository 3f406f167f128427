"""Container images for lab hosts, built from Debian's packages: no registry is reachable from the lab.

One Debian rootfs serves every image made of Debian's software (``debian_rootfs``): a minimal bookworm
(``--variant=minbase``) with ``PACKAGES``, debootstrapped once per package list and cached under
/var/cache/samarth-lab (shared by concurrent test runs through a lock), with the Debian version of each
package recorded beside it (``debian_versions``). ``import_debian`` loads it into a lab host's daemon once
(``docker import``), and ``build_image`` makes each image from it, or from another base, with a Dockerfile
of lab/image-files/ (the official image's users, paths, environment and entry point over Debian's
binaries); every image a host holds shares that one base layer.

``import_services`` is the drills' image (tests/lab/test_backups_lab.py): Debian's PostgreSQL 15 by default
(the platform runs the official ``postgres:16``; dumps and restores go through the same pg_dump/pg_restore
options on both), and Debian's Redis 7.0 with ``redis-server ...`` as command (the platform runs
``redis:7.4``; the RDB and append-only formats the restore relies on are the same). Debian's restic 0.14
is at /usr/bin/restic, the path restic's official image uses, so the backup installer copies restic out of
it exactly as it does out of ``versions.restic`` on the servers; likewise Debian's rclone 1.60, also at
/usr/local/bin/rclone where rclone's official image (``versions.rclone``) has it. lab/rehearsal_images.py
serves each pinned reference of the stack the same way.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .core import LabError, LabHost, docker
from .machines import CACHE, MIRROR, SUITE, locked

# The software of every Debian-made lab image; busybox-static for the stand-ins' httpd, python3 for the
# S3 stand-in (``python_packages``).
PACKAGES = (
    "postgresql-15", "redis-server", "restic", "rclone", "nginx", "docker-registry", "lego",
    "curl", "wget", "ca-certificates", "busybox-static", "python3",
)
# Debian's path -> the path the official image of ``versions.<name>`` uses, copied into the rootfs.
OFFICIAL_PATHS = {"usr/bin/rclone": "usr/local/bin/rclone"}
# Not needed to run anything in the lab: the package cache, documentation, translations, the LLVM that
# PostgreSQL's JIT loads (the Postgres entry point starts it with jit=off) and the cluster Debian's package
# makes (the official image has none: its entry point makes one on the data volume).
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale", "usr/share/man",
        "usr/lib/x86_64-linux-gnu/libLLVM-14.so.1", "usr/lib/x86_64-linux-gnu/libz3.so.4",
        "usr/lib/postgresql/15/lib/llvmjit.so", "usr/lib/postgresql/15/lib/bitcode", "var/lib/postgresql/15/main")
# The Dockerfiles and the files they copy (entry points, configs).
IMAGE_FILES = Path(__file__).resolve().parent / "image-files"
# The label that says what an image was built from (``build_image`` rebuilds it when that changes).
BUILT_FROM = "org.samarth.lab.built-from"
# The label that names the reference an image was built as.
REFERENCE = "org.samarth.lab.reference"


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
    installed = subprocess.run(
        ["dpkg-query", f"--admindir={work}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout
    for path in TRIM:
        target = work / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for debian, official in OFFICIAL_PATHS.items():
        if (work / debian).exists():
            shutil.copy2(work / debian, work / official)
    versions = dict(line.split("\t", 1) for line in installed.splitlines())
    tarball.with_suffix(".json").write_text(json.dumps(versions, indent=1, sort_keys=True))
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(work), "--numeric-owner", "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(work)


def debian_rootfs(packages: Sequence[str] = PACKAGES) -> Path:
    """A tarball of a minimal Debian with ``packages``, built once and then reused."""
    key = hashlib.sha256(f"{SUITE} {' '.join(sorted(packages))} {TRIM} {OFFICIAL_PATHS}".encode()).hexdigest()[:16]
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    with locked(CACHE / ".lock"):
        if not tarball.exists():
            _build(packages, tarball)
    return tarball


def debian_versions() -> dict[str, str]:
    """The Debian version of every package in the rootfs of ``PACKAGES`` (``{"nginx": "1.22.1-9+deb12u12"}``)."""
    return dict(json.loads(debian_rootfs().with_suffix(".json").read_text()))


def import_image(host: LabHost, tarball: Path, name: str, changes: Sequence[str]) -> None:
    """``docker import`` the tarball into ``host``'s daemon as ``name`` unless it is there already."""
    if docker(host, "image", "inspect", name).returncode == 0:
        return
    args = [arg for change in changes for arg in ("--change", change)]
    result = docker(host, "import", *args, str(tarball), name, timeout=600)
    if result.returncode != 0:
        raise LabError(f"lab host {host.name}: docker import of {tarball} failed: {result.stderr}")


def import_debian(host: LabHost) -> str:
    """The Debian rootfs as an image on ``host`` (named after its cache key), imported once per daemon."""
    tarball = debian_rootfs()
    name = f"samarth-lab/debian:{tarball.stem.removeprefix('debian-')}"
    import_image(host, tarball, name, ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    return name


def _closure(requirements: Sequence[str]) -> list[importlib.metadata.Distribution]:
    """The distributions installed here that ``requirements`` need, their own requirements included
    (markers evaluated for this interpreter and the extras asked for)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    wanted = [Requirement(r) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        requirement = wanted.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            raise LabError(f"{requirement.name} is not installed here: venv/bin/pip install -r requirements.txt") from None
        found[key[0]] = distribution
        for text in distribution.requires or []:
            needed = Requirement(text)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                wanted.append(needed)
    return [found[name] for name in sorted(found)]


def python_packages(requirements: Sequence[str]) -> Path:
    """A tarball of the installed files of ``requirements`` and what they need, as this interpreter has
    them (paths relative to its site-packages), for the Python 3 of the Debian rootfs: built once per
    set of versions. Compiled modules are this interpreter's, so its minor version must be the rootfs's."""
    debian_python = upstream_python(debian_versions().get("python3", ""))
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    if debian_python != ours:
        raise LabError(f"the lab's Python packages are copied from this interpreter ({ours}), which must be the "
                       f"Debian rootfs's Python ({debian_python or 'none'}): run the lab from a venv of Python {debian_python}")
    distributions = _closure(requirements)
    key = hashlib.sha256(repr(sorted((d.metadata["Name"], d.version) for d in distributions)).encode()).hexdigest()[:16]
    tarball = CACHE / f"python-{ours}-{key}.tar"
    with locked(CACHE / ".lock"):
        if not tarball.exists():
            partial = tarball.with_suffix(".partial")
            with tarfile.open(partial, "w") as tar:
                for distribution in distributions:
                    for file in distribution.files or []:
                        # Scripts installed beside the interpreter (``../../../bin/...``) and bytecode are left out.
                        if file.parts[0] != ".." and "__pycache__" not in file.parts:
                            tar.add(str(distribution.locate_file(file)), arcname=str(file))
            partial.rename(tarball)
    return tarball


def upstream_python(debian_version: str) -> str:
    """``3.11.2-1+b1`` (Debian's python3) -> ``3.11``."""
    return ".".join(debian_version.split(".")[:2]) if debian_version else ""


@functools.cache
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def build_image(host: LabHost, base: str, name: str, dockerfile: str, context: Mapping[str, Path]) -> None:
    """``name`` on ``host``'s daemon, built with ``dockerfile`` (a file of lab/image-files/, which starts
    ``ARG BASE`` / ``FROM $BASE``) on the image ``base``; ``context`` maps the other files it copies, by
    their name in the build context, to where they are here (modes kept). Skipped when ``name`` is already
    built from the same base, Dockerfile and files."""
    files = {dockerfile: IMAGE_FILES / dockerfile, **context}
    stats = {entry: path.stat() for entry, path in files.items()}
    built_from = hashlib.sha256(repr((base, sorted(
        (entry, stat.st_mode & 0o777, _digest(files[entry], stat.st_size, stat.st_mtime_ns)) for entry, stat in stats.items()
    ))).encode()).hexdigest()[:16]
    found = docker(host, "image", "inspect", "--format", f'{{{{ index .Config.Labels "{BUILT_FROM}" }}}}', name)
    if found.returncode == 0 and found.stdout.strip() == built_from:
        return
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for entry, path in sorted(files.items()):
                info = tarfile.TarInfo(entry)
                info.size, info.mode = stats[entry].st_size, stats[entry].st_mode & 0o777
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        archive.seek(0)
        # The classic builder: the lab's Docker (Debian's docker.io) has no BuildKit.
        result = subprocess.run(
            # The reference as a label too: each pin is an image of its own, as each upstream release is, so
            # a version bump changes the image ID (the same software served under two tags would not).
            ["docker", "-H", host.docker_host, "build", "--build-arg", f"BASE={base}", "--label", f"{BUILT_FROM}={built_from}",
             "--label", f"{REFERENCE}={name}",
             "--file", dockerfile, "--tag", name, "-"],
            stdin=archive, capture_output=True, text=True, timeout=600, env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    if result.returncode != 0:
        raise LabError(f"lab host {host.name}: building {name} from {dockerfile} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


def image_files(*names: str) -> dict[str, Path]:
    """Files of lab/image-files/ for a build context, under their own names."""
    return {name: IMAGE_FILES / name for name in names}


def import_services(host: LabHost, name: str = "samarth-lab/services:bookworm") -> str:
    """The drills' image on ``host``: Postgres by default, Redis with ``redis-server ...`` as command."""
    build_image(host, import_debian(host), name, "services.Dockerfile",
                image_files("postgres-entrypoint.sh", "redis-entrypoint.sh"))
    return name


# RabbitMQ without a debootstrap (Erlang would add about a minute to every CI run's image build): Debian's
# rabbitmq-server and Erlang as installed on this machine (tools/test-packages.txt), the shared libraries
# they load, and busybox for the scripts' shell and tools, in a small image. Like the official image
# (docker-library/rabbitmq: ENV HOME=/var/lib/rabbitmq, so `docker exec ... rabbitmqctl` finds the Erlang
# cookie the server wrote there; CMD rabbitmq-server), but the server runs as root.
RABBITMQ_TREES = ("/usr/lib/erlang", "/usr/lib/rabbitmq")


def elf_libraries(paths: Sequence[str]) -> set[str]:
    """The shared libraries (and the loader) the ELF files at ``paths`` (files, or trees of them) load."""
    candidates = [p for path in map(Path, paths) for p in ([path] if path.is_file() else path.rglob("*"))]
    elves = []
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    elves.append(str(path))
    libraries: set[str] = set()
    for elf in elves:
        result = subprocess.run(["ldd", elf], capture_output=True, text=True)
        libraries |= {word for word in result.stdout.split() if word.startswith("/") and ".so" in word}
    return libraries


def host_files(paths: Sequence[str]) -> dict[str, Path]:
    """This machine's files at ``paths`` and the shared libraries they load, as build context entries
    under ``rootfs/`` (a Dockerfile's ``COPY rootfs/ /`` puts each at its path)."""
    return {f"rootfs{path}": Path(os.path.realpath(path)) for path in sorted({*paths, *elf_libraries(paths)})}


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
        for library in sorted(elf_libraries(RABBITMQ_TREES)):
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
