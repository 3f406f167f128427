"""Postgres's data path follows the image's major version, and a major-version change on a server whose
volume already holds another major version's data is refused before the container is replaced.

The plan tests run the program under mocks; the script runs for real on a lab host's dockerd against a
volume holding a Postgres 15 data directory made by Debian's initdb and a PG_VERSION stand-in for 16.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.services.databases.catalogue import ENGINES, Container, image_major
from components.services.databases.component import major_check_script
from lab.core import docker, ssh, ssh_command
from tests.support.lab_fixture import LabSession
from tools.offline import ProgramRun, run_program, stack_file

CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"


def _versions(stack: str, **changes: str) -> dict[str, object]:
    document = yaml.safe_load(stack_file(stack).read_text())
    return {**document["config"]["samarth-infra:versions"], **changes}


@pytest.fixture(scope="module")
def prod18() -> ProgramRun:
    return run_program("prod", overrides={"versions": _versions("prod", postgres="postgres:18.1")})


@pytest.mark.parametrize(
    "image, path",
    [
        ("postgres:16.15", "/var/lib/postgresql/data"),
        ("postgres:17.7-alpine", "/var/lib/postgresql/data"),
        ("postgres:18.1", "/var/lib/postgresql"),
        ("registry.example.org:5000/postgres:19beta3@sha256:" + "a" * 64, "/var/lib/postgresql"),
    ],
)
def test_mount_path_follows_the_major_version(image: str, path: str) -> None:
    assert ENGINES["postgres"].mount_path(image) == path


def test_image_major_reads_the_tag_not_the_registry_port() -> None:
    assert image_major("registry.example.org:5000/postgres:16.15") == 16
    assert image_major("postgres@sha256:" + "a" * 64) is None


def test_prod_plan_with_postgres_18_mounts_the_volume_at_var_lib_postgresql(prod18: ProgramRun) -> None:
    postgres = [r for r in prod18.of_type(CONTAINER) if r.inputs["name"].startswith("postgres-")]
    assert len(postgres) == 8
    for container in postgres:
        (mount,) = container.inputs["volumes"]
        assert mount["containerPath"] == "/var/lib/postgresql"
    others = [r for r in prod18.of_type(CONTAINER) if r.inputs["name"].startswith(("redis-", "opensearch-"))]
    assert {r.inputs["volumes"][0]["containerPath"] for r in others} == {"/data", "/usr/share/opensearch/data"}


def test_every_postgres_container_waits_for_its_major_version_check(prod18: ProgramRun) -> None:
    for container in (r for r in prod18.of_type(CONTAINER) if r.inputs["name"].startswith("postgres-")):
        server = next(a for a in prod18.ancestors(container) if a.type == "samarth:data:DatabaseServer").name
        check = prod18.named(COMMAND, f"{server.removesuffix('-databases')}-{container.inputs['name']}-major-check")
        assert check.urn in container.dependencies
        assert check.inputs["triggers"] == ["postgres:18.1"]
        assert "MAJOR=18" in check.inputs["create"] and "VOLUME=" + container.inputs["name"] + "-data" in check.inputs["create"]
    assert not [r for r in prod18.of_type(COMMAND) if r.name.startswith(("db1-redis", "db2-opensearch")) and "major" in r.name]


# --- the script, on a real dockerd ------------------------------------------------------------------

HELPER_IMAGE = "127.0.0.1:9/samarth-lab/postgres-stand-in:18.1"


def _script(image: str) -> str:
    return major_check_script("db2", Container("yaus", "postgres", "db2", 5435, 512), image)


def _helper_image(session: LabSession) -> None:
    """A tiny image with /bin/sh, cat and friends (busybox-static), standing in for the pinned Postgres
    image the script mounts the volume with."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "cat", "printf", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    host = session.host("swarm-master")
    imported = subprocess.run(
        ["docker", "-H", host.docker_host, "import", "-", HELPER_IMAGE], input=archive.getvalue(), capture_output=True
    )
    assert imported.returncode == 0, imported.stderr


def _volume_with(session: LabSession, volume: str, source: Path) -> None:
    """Create ``volume`` on the lab host and copy ``source`` into its root on the server's own disk: a
    tar of it unpacked as root at the volume's mountpoint inside the machine."""
    host = session.host("swarm-master")
    docker(host, "volume", "rm", "-f", volume)
    assert docker(host, "volume", "create", volume).returncode == 0
    mountpoint = docker(host, "volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(source, arcname=".")
    unpacked = subprocess.run(ssh_command(host, "sudo", "-n", "tar", "-x", "-C", mountpoint, "-f", "-"),
                              input=archive.getvalue(), capture_output=True, timeout=60)
    assert unpacked.returncode == 0, unpacked.stderr


def _read_on_host(session: LabSession, path: str) -> str:
    """A file of the lab host's, read as its root reads it (a volume's data is root's alone)."""
    read = ssh(session.host("swarm-master"), f"cat '{path}'\n", sudo=True)
    assert read.returncode == 0, read.stderr
    return read.stdout


@pytest.fixture(scope="module")
def pg15_data_dir() -> Iterator[Path]:
    initdb = Path("/usr/lib/postgresql/15/bin/initdb")
    if not initdb.exists():
        pytest.fail("Debian's postgresql-15 is missing: apt-get install -y postgresql (tools/test-packages.txt)")
    # Not under pytest's root-only temporary directory: initdb runs as the postgres user.
    directory = Path(tempfile.mkdtemp(prefix="samarth-pg15-"))
    data = directory / "data"
    shutil.chown(directory, "postgres", "postgres")
    made = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(initdb), "-D", str(data), "--auth=trust", "--no-sync"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert (data / "PG_VERSION").read_text().strip() == "15"
    yield data
    shutil.rmtree(directory)


def test_the_check_refuses_another_major_version_and_passes_the_same_one(lab_session: LabSession, pg15_data_dir: Path, tmp_path: Path) -> None:
    host = lab_session.host("swarm-master")
    _helper_image(lab_session)
    volume = "postgres-yaus-data"

    # No volume yet: a first install.
    docker(host, "volume", "rm", "-f", volume)
    fresh = ssh(host, _script(HELPER_IMAGE))
    assert fresh.returncode == 0, fresh.stderr
    assert "does not exist yet; Postgres 18 will create its data directory at /var/lib/postgresql" in fresh.stdout

    # A real Postgres 15 data directory (Debian's initdb) at the volume's root, as images up to 17 keep it.
    _volume_with(lab_session, volume, pg15_data_dir)
    refused = ssh(host, _script(HELPER_IMAGE))
    assert refused.returncode != 0
    assert "postgres-yaus-data holds a Postgres 15 data directory (PG_VERSION)" in refused.stderr
    assert "A major upgrade is not an image bump" in refused.stderr and "pg_upgrade" in refused.stderr
    assert "pg_dumpall" in refused.stderr and "Nothing was changed." in refused.stderr
    again = ssh(host, _script(HELPER_IMAGE))  # read-only: the same answer again, the data untouched
    assert again.returncode != 0 and again.stderr == refused.stderr
    mountpoint = docker(host, "volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip()
    assert _read_on_host(lab_session, f"{mountpoint}/PG_VERSION").strip() == "15"

    # A 16 stand-in (PG_VERSION is what Postgres itself reads first) refused for 18, accepted for 16.
    stand_in = tmp_path / "pg16"
    stand_in.mkdir()
    (stand_in / "PG_VERSION").write_text("16\n")
    _volume_with(lab_session, volume, stand_in)
    refused16 = ssh(host, _script(HELPER_IMAGE))
    assert refused16.returncode != 0 and "holds a Postgres 16 data directory" in refused16.stderr
    assert "keep versions.postgres at a 16.x release" in refused16.stderr
    tag16 = HELPER_IMAGE.replace(":18.1", ":16.15")
    assert docker(host, "tag", HELPER_IMAGE, tag16).returncode == 0
    same = ssh(host, _script(tag16))
    assert same.returncode == 0, same.stderr
    assert "holds a Postgres 16 data directory; " in same.stdout

    # An 18 layout (<major>/docker inside the volume) is recognised for 18.
    layout18 = tmp_path / "pg18"
    (layout18 / "18" / "docker").mkdir(parents=True)
    (layout18 / "18" / "docker" / "PG_VERSION").write_text("18\n")
    docker(host, "volume", "rm", "-f", volume)
    _volume_with(lab_session, volume, layout18)
    assert ssh(host, _script(HELPER_IMAGE)).returncode == 0
    docker(host, "volume", "rm", "-f", volume)
