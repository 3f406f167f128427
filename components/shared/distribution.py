"""The configuration file of distribution's registry (``config.yml``), as every container of it the program
runs shares it: filesystem storage with deletes on, the HTTP listener with its shared secret, ``nosniff``
and a debug listener that serves ``/debug/health`` (the container healthcheck), and storage health
checks. Each caller adds what is its own: a public host and a login, or a ``proxy`` section. No Pulumi
here; keys as distribution v3.1.1 ``docs/content/about/configuration.md`` names them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

# Where 3.x images read the file (distribution-library-image's Dockerfile: its CMD); 2.x read
# /etc/docker/registry/config.yml. A container names the file itself (its command), so the upload is
# what runs whichever major version is pinned.
CONFIG_PATH = "/etc/distribution/config.yml"
# The debug listener serves /debug/health (storage driver checks) for the healthcheck; never published.
DEBUG_PORT = 5001


def render(
    label: str,
    storage_path: str,
    port: int,
    http_secret: str,
    http: Mapping[str, Any] = {},
    sections: Mapping[str, Any] = {},
) -> str:
    """``config.yml`` for a registry logging as ``label``, storing under ``storage_path`` and listening on
    ``port``; ``http`` adds listener keys (before the secret), ``sections`` top-level ones (before
    ``health``)."""
    document: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": label}},
        "storage": {
            "filesystem": {"rootdirectory": storage_path},
            # Deletes on: the registry's API may delete, and a proxy's scheduler removes expired content.
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f":{port}",
            **http,
            # Shared by restarts, so uploads in progress survive a container replacement.
            "secret": http_secret,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "debug": {"addr": f"127.0.0.1:{DEBUG_PORT}"},
        },
        **sections,
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    return yaml.safe_dump(document, sort_keys=False)


def healthcheck_command() -> list[str]:
    """The container healthcheck: the debug listener's ``/debug/health`` (``wget`` is in the image)."""
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{DEBUG_PORT}/debug/health"]
