"""MinIO's API port under its former module, ``components.ports``: tests/test_backups_lab.py imports it so
until it is next changed. New code imports it from the storage service."""

from components.shared.ports import MINIO_API_PORT

__all__ = ["MINIO_API_PORT"]
