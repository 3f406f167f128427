"""Restores applied and drilled beyond Postgres and files (those are in test_backups_lab.py): each kind
backed up by the program's agent over SFTP to another lab host, the data lost, restored by
``samarth-restore`` into a scratch container, then with ``--replace-live``, and compared.

A module of its own so that pytest-xdist (``--dist loadfile``) runs it beside the Postgres drill.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from components.assembly import backup_sources
from lab import docker, rabbitmq_drill, redis_drill, ssh
from lab.backup_drill import (
    LAYOUT,
    SERVER,
    Drill,
    check,
    drill_config,
    remove_containers_and_volumes,
    remove_sftp_account,
    sftp_account,
    uninstall_agent,
)
from lab.images import import_rabbitmq
from tests.support.lab_fixture import LabSession


@pytest.fixture(scope="module")
def drill(lab_session: LabSession) -> Iterator[Drill]:
    """The db2 machine and the SFTP account serving its repositories; each test installs its own agent."""
    db, repository_host = lab_session.host("swarm-node2"), lab_session.host("swarm-node3")
    try:
        yield Drill(db=db, repository=sftp_account(db, repository_host), config=drill_config(), name="restores")
    finally:
        uninstall_agent(db)
        remove_sftp_account(repository_host)


def test_redis_backup_restores_every_key(drill: Drill, tmp_path_factory: pytest.TempPathFactory) -> None:
    """redis-odk-adapter (password, --appendonly yes): keys of every type in two databases, backed up by
    the agent, container and volume lost; the restore loads the RDB in a scratch container, and with
    --replace-live Redis serves exactly the backed-up keys, also after a restart (from its append-only file)."""
    (source,) = [s for s in backup_sources(drill.config) if s.name == redis_drill.TARGET]
    root = tmp_path_factory.mktemp("redis-backups")
    agent = Drill(db=drill.db, repository=drill.repository, config=drill.config, name="redis")
    host, image = drill.db, drill.image
    try:
        redis_drill.start_redis(host, image, root)
        redis_drill.fill_redis(host, 2000)
        before = redis_drill.redis_digests(host)
        assert before[0].startswith("2801 ") and before[3].startswith("701 ")
        check(agent.install(SERVER, [source]), "the installer")
        check(agent.agent("run", source.name), "the Redis backup")

        redis_drill.destroy_redis(host)
        redis_drill.start_redis(host, image, root)  # `pulumi up` brings back an empty Redis
        redis_drill.redis_cli(host, "set", "written-after-the-loss", "1")

        checked = check(agent.restore(source.name), "the restore into a scratch volume")
        assert "restored and checked: 3502 keys (2 with an expiry), dump.rdb holds 3502" in checked.stdout
        assert redis_drill.redis_cli(host, "dbsize") == "1", "live data was touched"

        replaced = check(agent.restore(source.name, "--replace-live"), "the restore into the live volume")
        assert f"{source.container} loaded 3502 keys" in replaced.stdout
        assert redis_drill.redis_digests(host) == before
        assert redis_drill.redis_cli(host, "config", "get", "appendonly").split() == ["appendonly", "yes"]
        # Redis persists the restored data in its own append-only file: a restart loads it all again.
        check(docker(host, "restart", source.container), "restarting Redis")
        redis_drill.wait_redis(host)
        assert redis_drill.redis_digests(host) == before
        # The data the restore replaced is kept, not deleted.
        (kept,) = docker(host, "volume", "ls", "-q", "--filter", f"name={source.container}-data-before-").stdout.split()
        assert "appendonlydir" in check(docker(host, "run", "--rm", "-v", f"{kept}:/kept", image, "ls", "/kept"), "listing").stdout.split()

        # A damaged dump.rdb in the newest complete run is refused by the check, before the live data
        # is touched (stored here with restic itself, as no agent would store it).
        _store_damaged_run(agent, source.name, "printf 'REDIS0010 damaged'", "dump.rdb")
        damaged = agent.restore(source.name, "--replace-live")
        assert damaged.returncode != 0 and "writing and checking dump.rdb: failed" in damaged.stderr
        assert redis_drill.redis_digests(host) == before
    finally:
        remove_containers_and_volumes(host, source.container)


def test_rabbitmq_definitions_restore_into_a_scratch_broker_then_the_live_one(drill: Drill) -> None:
    """rabbitmq-yaus: vhosts, users, permissions, a policy, an exchange, queues and a binding, exported by
    the agent, broker and volume lost; the restore imports them into a scratch broker without network
    and checks every object is there, then with --replace-live into the live broker, whose service user
    keeps its deployed password."""
    (source,) = [s for s in backup_sources(drill.config) if s.name == rabbitmq_drill.TARGET]
    agent = Drill(db=drill.db, repository=drill.repository, config=drill.config, name="rabbitmq")
    host, image = drill.db, import_rabbitmq(drill.db)
    try:
        rabbitmq_drill.start_rabbitmq(host, image)
        rabbitmq_drill.declare(host)
        before = rabbitmq_drill.definitions(host)
        assert sorted(str(q["name"]) for q in before["queues"]) == ["daily", "jobs"]
        check(agent.install(SERVER, [source]), "the installer")
        check(agent.agent("run", source.name), "the RabbitMQ backup")

        rabbitmq_drill.destroy_rabbitmq(host)
        rabbitmq_drill.start_rabbitmq(host, image)  # `pulumi up` brings back a broker with only its own user and vhost
        empty = rabbitmq_drill.definitions(host)

        checked = check(agent.restore(source.name), "the restore into a scratch broker")
        assert "restored and checked: 11 definitions (1 bindings, 1 exchanges, 2 permissions, 1 policies, 2 queues, 2 users, 2 vhosts)" in checked.stdout
        assert rabbitmq_drill.definitions(host) == empty, "the live broker was touched"
        assert not docker(host, "ps", "-aq", "--filter", f"name={source.container}-restore").stdout.strip()

        replaced = check(agent.restore(source.name, "--replace-live"), "the import into the live broker")
        assert f"{source.container} has every restored definition" in replaced.stdout
        assert rabbitmq_drill.definitions(host) == before
        assert rabbitmq_drill.authenticates(host, rabbitmq_drill.USER, rabbitmq_drill.PASSWORD)
        assert rabbitmq_drill.authenticates(host, "reporter", "reporter-secret")
        (saved,) = (drill.db.root / LAYOUT.state_dir.lstrip("/") / "restore").glob(f"{source.container}-definitions-before-*.json")
        assert oct(saved.stat().st_mode & 0o777) == "0o600"

        # Truncated definitions, as the newest complete run, fail to import into the scratch broker; the
        # live broker is not touched.
        truncated = shlex.quote('{"vhosts":[{"name":"reports"}],"queues":[{"name":"jobs","vhost":"yaus"')
        _store_damaged_run(agent, source.name, f"printf %s {truncated}", "definitions.json")
        damaged = agent.restore(source.name, "--replace-live")
        assert damaged.returncode != 0 and "importing definitions.json into rabbitmq-yaus-restore-" in damaged.stderr
        assert rabbitmq_drill.definitions(host) == before
    finally:
        remove_containers_and_volumes(host, source.container)


def _store_damaged_run(agent: Drill, target: str, payload: str, filename: str) -> None:
    """Store what the shell command ``payload`` prints as ``filename`` of a run tagged complete, the
    newest of ``target``'s, with restic itself, as no agent would store it."""
    config = LAYOUT.config_dir
    stored = ssh(agent.db, f". {config}/repository.env; export RESTIC_REPOSITORY; {payload} | "
                           f"RESTIC_PASSWORD_FILE={config}/password {LAYOUT.restic} -o sftp.command=\"$SAMARTH_SFTP_COMMAND\" "
                           f"backup --quiet --host {SERVER} --tag samarth,target={target},run-damaged,complete "
                           f"--stdin --stdin-filename {filename}\n", sudo=True)
    check(stored, f"storing a damaged {filename}")
