"""MinIO's API port under its former module, ``components.ports``: tests/test_backups_lab.py imports it so
until it is next changed (tests/test_structure.py allows no other user). New code imports it from
``components.services.storage.settings``."""

from components.services.storage.settings import API_PORT as MINIO_API_PORT

__all__ = ["MINIO_API_PORT"]
