"""The compose projects' directory (components/services/observability/scripts/compose-lib.sh, shared by the Sentry and PostHog
installs) on a lab machine as the servers' login user: under root's /opt it is made through sudo and given
to the user, who runs git and docker compose in it; a directory the user cannot write stops the install
with what to do.
"""

from __future__ import annotations

from components.shared.shell import render
from lab import ssh
from tests.support.lab_fixture import LabSession

DIRECTORY = "/opt/samarth/drill-project"


def _compose_directory(directory: str) -> str:
    return render("compose-lib.sh", "compose-directory[db2]", NAME="drill", DIRECTORY=directory, SERVER="db2") + "compose_directory\n"


def test_the_directory_is_made_through_sudo_and_given_to_the_login_user(lab_session: LabSession) -> None:
    host = lab_session.host("db2")
    try:
        first = ssh(host, _compose_directory(DIRECTORY))
        assert first.returncode == 0, first.stderr
        made = host.root / DIRECTORY.lstrip("/")
        owner = int(ssh(host, "id -u\n").stdout)
        assert made.stat().st_uid == owner and made.parent.stat().st_uid == 0
        again = ssh(host, _compose_directory(DIRECTORY))
        assert again.returncode == 0, again.stderr

        ssh(host, f"chown root: {DIRECTORY} && chmod 755 {DIRECTORY}\n", sudo=True)
        refused = ssh(host, _compose_directory(DIRECTORY))
        assert refused.returncode != 0
        assert f"{DIRECTORY} exists but user {host.user} cannot write to it: give it to the user" in refused.stderr
    finally:
        ssh(host, f"rm -rf {DIRECTORY}; rmdir --ignore-fail-on-non-empty /opt/samarth\n", sudo=True)
