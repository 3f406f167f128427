"""The backups service under its former module name, ``components.backups``, with the two functions that
took a whole stack config: lab/backup_drill.py and the backup lab tests use it until they are next changed
(tests/test_structure.py allows no other user). New code imports ``components.services.backups``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from components.config import StackConfig
from components.services.backups import component
from components.services.backups.component import (
    BUCKET,
    LAYOUT,
    Layout,
    credential_text,
    offsite_known_hosts,
    offsite_repository,
    offsite_settings,
    s3_repository_url,
)
from components.services.databases import settings as databases
from components.shared.service import BackupSource as Source

__all__ = [
    "BUCKET",
    "Layout",
    "Source",
    "credential_text",
    "database_sources",
    "install_script",
    "offsite_known_hosts",
    "offsite_repository",
    "offsite_settings",
    "s3_repository_url",
]


def database_sources(config: StackConfig) -> list[Source]:
    """Every database container the catalogue backs up."""
    return list(databases.declare(config, ()).backups)


def install_script(
    config: StackConfig,
    server: str,
    sources: Sequence[Source],
    restic_image: str,
    layout: Layout = LAYOUT,
    rclone_image: Optional[str] = None,
) -> str:
    """The installer of ``config.backups``; ``rclone_image`` by default ``versions.rclone`` with an off-site repository."""
    if rclone_image is None:
        rclone_image = (config.versions.rclone or "") if config.backups.offsite is not None else ""
    return component.install_script(config.backups, server, sources, restic_image, layout, rclone_image)
