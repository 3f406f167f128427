"""MinIO on the application server: its ports and who reaches them, doc-generator's bucket and the
credentials it publishes, its memory. It has no section of its own in the stack config. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from components.shared.service import (
    CONTAINERS,
    OBJECT_STORE,
    OPERATORS,
    PULUMI,
    SWARM_MEMBERS,
    BackupSource,
    Credentials,
    Declaration,
    Listener,
    Placement,
    Service,
    Upstream,
)

if TYPE_CHECKING:
    from components.config import StackConfig

API_PORT = 9000
CONSOLE_PORT = 9090
MEMORY_MIB = 2048
BUCKET = "doc-generator"
# What the bucket's user publishes for doc-generator's CI job, at kv/samarth/doc-generator.
CREDENTIALS = ("MINIO_URL", "MINIO_USER", "MINIO_PASSWORD")


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    server = SERVICE.server
    # The S3 API: Pulumi's MinIO provider, the swarm's services (MINIO_URL) and Nginx's public
    # downloads; the console is an admin UI, for the operators only.
    api = Listener(server, API_PORT, "MinIO's S3 API", "MinIO S3 API", (PULUMI, SWARM_MEMBERS, CONTAINERS))
    return Declaration(
        listeners=(api, Listener(server, CONSOLE_PORT, "MinIO's console", "MinIO console", (OPERATORS,))),
        provides={OBJECT_STORE: api},
        # Public downloads only: the S3 API behind it serves anonymous GetObject, nothing that writes.
        upstreams=(Upstream("minio", server, API_PORT, ("limit_except GET { deny all; }", "proxy_buffering off;")),),
        backups=(BackupSource(server, f"minio-{BUCKET}", "files", "minio", f"/data/{BUCKET}"),),
        not_backed_up={
            f"minio (other than {BUCKET})": "MinIO's own settings, users and policies are declared by this program and "
            "re-created by `pulumi up`; the samarth-backups bucket is itself the repository of db1, db2 and swarm-master",
        },
        credentials=(Credentials(BUCKET, CREDENTIALS),),
        placements=(Placement(server, "minio", MEMORY_MIB),),
    )


SERVICE = Service("minio", declare, "application")
