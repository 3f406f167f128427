"""The backups service's component under its former name, ``components.backups``: lab/backup_drill.py and
the backup lab tests import it so until they are next changed. New code imports
``components.services.backups.component``."""

from components.services.backups.component import *  # noqa: F403
