"""The backup pieces that run without lab hosts: the catalogue covers every stateful thing, the plan and
the capacity check see the repositories. (tools/backup-pulumi-state.sh with real restic:
tests/tools/test_state_backup.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from components.assembly import backup_sources, not_backed_up, stack_placements
from components.capacity import check_capacity
from components.config import ConfigError, validate
from components.services.backups import component as backups
from components.services.backups.catalogue import METHODS
from components.services.databases import settings as databases
from components.services.databases.backup_coverage import ENGINES, PURE_CACHES
from components.services.databases.catalogue import CATALOGUE
from components.services.databases.catalogue import ENGINES as DATABASE_ENGINES
from components.shared.service import BackupSource
from components.shared.shell import script_files
from tests.support.skip_policy import as_root
from tools.offline import SECRET_V2, ProgramRun, is_secret, read_stack_values, reveal, stack_file
from tools.plan import backup_plan

ROOT = Path(__file__).resolve().parents[2]


def stack_raw(stack: str) -> dict:
    values, _ = read_stack_values(stack_file(stack))
    return {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in values.items()}


def test_every_database_container_is_backed_up_or_has_a_reason() -> None:
    config = validate(stack_raw("prod"))
    backed_up = {s.name for s in databases.declare(config, ()).backups}
    reasons = not_backed_up(config)
    for container in config.databases.containers():
        assert (container.name in backed_up) != (container.name in reasons), container.name
    assert set(ENGINES) == set(DATABASE_ENGINES), "every engine has a coverage line"
    assert {coverage.method for coverage in ENGINES.values()} - {None} <= set(METHODS)
    assert {service for service, _ in PURE_CACHES} <= {s.name for s in CATALOGUE}
    assert "opensearch-fusionauth" in reasons and "redis-esamwad-backend" in reasons
    assert {s.method for s in backup_sources(config)} == set(METHODS)


def test_a_repository_that_does_not_fit_is_refused_naming_the_key() -> None:
    raw = stack_raw("prod")
    raw["servers"]["db1"]["diskGib"] = 50
    config = validate(raw)
    with pytest.raises(ConfigError, match=r"servers\.db1\.diskGib: 50 GiB .* backup repository of application"):
        check_capacity(config, stack_placements(config))
    raw["backups"]["dataGib"] = {"files": 1, "registry": 1}
    config = validate(raw)
    check_capacity(config, stack_placements(config))


def test_backup_config_mistakes_name_the_key() -> None:
    raw = stack_raw("prod")
    raw["backups"]["schedules"] = {"postgress": "hourly"}
    with pytest.raises(ConfigError, match=r"backups\.schedules: .*'postgress' is not a backup method"):
        validate(raw)
    raw["backups"]["schedules"] = {"postgres": "every minute"}
    with pytest.raises(ConfigError, match=r"backups\.schedules\.postgres: 'every minute' is not a calendar event systemd reads"):
        validate(raw)
    raw["backups"]["schedules"] = {"postgres": "*:0/15"}
    raw["backups"]["defaultSchedule"] = "Sat *-*-* 02:00"
    with pytest.raises(ConfigError, match=r"backups\.defaultSchedule: 'Sat \*-\*-\* 02:00' has a space, and the backup agent's"):
        validate(raw)
    raw["backups"]["defaultSchedule"] = "Sat"
    assert validate(raw).backups.schedule("postgres") == "*:0/15"
    raw["backups"] = {"retention": {"hourly": 0, "daily": 0, "weekly": 0}}
    with pytest.raises(ConfigError, match=r"backups\.retention: .*keeps no snapshot"):
        validate(raw)


def test_the_plan_shows_each_servers_schedule_and_repository() -> None:
    lines = "\n".join(backup_plan(validate(stack_raw("prod"))))
    assert "db2: repository on application (~" in lines
    assert "application: repository on db1 (~" in lines
    assert "postgres-odk-adapter             postgres   hourly" in lines
    assert "opensearch-fusionauth: FusionAuth's search index" in lines


def test_backup_secrets_reach_hosts_only_on_stdin_and_vault(prod: ProgramRun) -> None:
    installs = [r for r in prod.of_type("command:remote:Command") if r.name.endswith("-install") and r.name.startswith("backups-")]
    assert {r.name for r in installs} == {f"backups-{s}-install" for s in ("db1", "db2", "application", "swarm-master")}
    passwords = {r.name: reveal(r.outputs["result"]) for r in prod.of_type("random:index/randomPassword:RandomPassword") if r.name.startswith("backups-")}
    for install in installs:
        server = install.name.removeprefix("backups-").removesuffix("-install")
        password = passwords[f"backups-{server}-repository-password"]
        assert password not in json.dumps(reveal(install.inputs["create"]))
        assert "RESTIC_PASSWORD=" + password in reveal(install.inputs["stdin"])
        assert is_secret(install.inputs["stdin"])
    published = reveal(prod.named("vault:kv/secretV2:SecretV2", "vault-kv-platform-backups").inputs["dataJson"])
    keys = json.loads(published)
    assert keys["DB2_RESTIC_REPOSITORY"].startswith("s3:http://10.20.0.10:9000/samarth-backups/db2")
    assert keys["APPLICATION_RESTIC_REPOSITORY"] == "sftp:samarth-backup@10.20.0.21:/application"
    assert set(keys) >= {"DB1_RESTIC_PASSWORD", "DB1_AWS_SECRET_ACCESS_KEY", "APPLICATION_RESTIC_PASSWORD"}


def test_vault_takes_a_backup_password_only_once_its_server_has(prod: ProgramRun) -> None:
    """A rotation that fails on a server leaves Vault's copy at the password its repository opens with."""
    book = prod.named(SECRET_V2, "vault-kv-platform-backups")
    installs = [r for r in prod.of_type("command:remote:Command") if r.name.startswith("backups-") and r.name.endswith("-install")]
    assert installs
    for install in installs:
        assert install.urn in book.dependencies, install.name


def test_backup_traffic_passes_the_host_firewall_before_its_port_is_dropped(prod: ProgramRun) -> None:
    rules = reveal(prod.named("command:remote:Command", "firewall-application").inputs["create"])
    minio = [line.strip() for line in rules.splitlines() if "--ctorigdstport 9000 " in line and "-A " in line]
    db2 = prod.exports["privateIps"]["db2"]
    assert minio[-1].endswith("-j DROP") and sum(line.endswith("-j DROP") for line in minio) == 1
    assert any(f"-s {db2}/32" in line and line.endswith("RETURN") for line in minio)


def test_the_installer_copies_restic_from_where_the_pinned_image_puts_it() -> None:
    dockerfile = (ROOT / "tests/support/fixtures/upstreams/restic-v0.18.1/docker/Dockerfile.release").read_text()
    assert "COPY --from=helper /output/restic /usr/bin" in dockerfile
    assert 'ENTRYPOINT ["/usr/bin/restic"]' in dockerfile
    assert 'docker cp "$container:/usr/bin/restic"' in script_files()["backup-install.sh"].read_text()


def test_the_agent_rotates_keys_with_what_both_restic_versions_have() -> None:
    """The agent's `init` runs restic's key commands and tells a wrong password from a missing repository
    as the pinned 0.18.1 (its source at the tag, kept as fixtures) and Debian's 0.14 (installed here; the
    rotation tests run it) both do. The installed one is asked in tests/tools/test_state_backup.py."""
    source = ROOT / "tests/support/fixtures/upstreams/restic-v0.18.1"
    add = (source / "cmd/restic/cmd_key_add.go").read_text()
    assert 'Use:   "add"' in add and 'flags.StringVarP(&opts.NewPasswordFile, "new-password-file"' in add
    listing = (source / "cmd/restic/cmd_key_list.go").read_text()
    assert 'Current  bool   `json:"current"`' in listing and 'ID       string `json:"id"`' in listing
    assert "if gopts.JSON {" in listing
    remove = (source / "cmd/restic/cmd_key_remove.go").read_text()
    assert 'Use:   "remove [ID]"' in remove and "restic.Find(ctx, repo, restic.KeyFile, idPrefix)" in remove
    assert 'ErrNoKeyFound = errors.New("wrong password or no key found")' in (source / "internal/repository/key.go").read_text()
    main = (source / "cmd/restic/main.go").read_text()
    assert "case errors.Is(err, ErrNoRepository):\n\t\texitCode = 10" in main
    assert "case errors.Is(err, repository.ErrNoKeyFound):\n\t\texitCode = 12" in main
    assert "unable to open config file: %v\\nIs there a repository" in (source / "cmd/restic/global.go").read_text()
    agent = script_files()["backup-agent.sh"].read_text()
    for used in ("key add --new-password-file", "key list --json", "key remove", '"wrong password or no key found"',
                 "12:*", "10:*", '"unable to open config file"'):
        assert used in agent, used
    # The restic installed here has them too: tests/tools/test_state_backup.py.

def test_the_redis_restore_relies_only_on_what_the_official_image_has() -> None:
    """The restore writes dump.rdb and gives it to the image's `redis` user itself, checks it with
    `redis-check-rdb` where the image has one and starts `redis-server --dir <restored>` through the image's
    entry point: the published redis:7.4.11's build steps (tests/support/fixtures/upstreams/redis-7.4.11)."""
    build = (ROOT / "tests/support/fixtures/upstreams/redis-7.4.11/repo-info-7.4.11-amd64.md").read_text()
    assert "useradd -r -g redis -u 999 redis" in build
    # redis' own `make install` links redis-check-rdb to redis-server (its src/Makefile).
    assert "make -C /usr/src/redis install;" in build
    assert "WORKDIR /data" in build and 'ENTRYPOINT ["docker-entrypoint.sh"]' in build
    agent = script_files()["backup-agent.sh"].read_text()
    assert "chown -R redis:redis /restored" in agent and "redis-check-rdb /restored/dump.rdb" in agent
    assert 'redis-server --dir "$detail" --appendonly no' in agent


@pytest.mark.parametrize(("schedule", "minutes_ago", "overdue"), [
    ("hourly", 90, False), ("hourly", 150, True),
    ("*:0/15", 20, False), ("*:0/15", 40, True),  # every quarter hour: overdue after half an hour
    ("Mon..Fri", 60 * 30, False),  # weekdays at midnight: a day apart at least
])
def test_status_counts_a_target_overdue_after_twice_its_schedules_interval(
    tmp_path: Path, schedule: str, minutes_ago: int, overdue: bool
) -> None:
    """Any calendar event's interval is systemd's own (its next two elapses), not a day by default."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing: apt-get install -y systemd")
    settings = validate(stack_raw("prod")).backups.model_copy(update={"schedules": {}, "default_schedule": schedule})
    layout = backups.Layout(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "state"), restic="/bin/false",
                            rclone="/bin/false", sbin_dir=str(tmp_path), unit_dir=str(tmp_path))
    source = BackupSource("db1", "postgres-esamwad-backend", "postgres", "postgres-esamwad-backend", "/var/lib/postgresql/data")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "repository.env").write_text("")
    (tmp_path / "etc" / "password").write_text("p\n")
    status = tmp_path / "state" / "status"
    status.mkdir(parents=True)
    (status / f"{source.name}.success").write_text(f"{int(time.time()) - 60 * minutes_ago} run-x\n")
    agent = tmp_path / "samarth-backup"
    agent.write_text(backups.agent_script(settings, "db1", [source], layout))
    shown = subprocess.run(as_root(["sh", str(agent), "status"]), capture_output=True, text=True, timeout=60)
    assert shown.returncode == (1 if overdue else 0), shown.stdout + shown.stderr
    assert schedule.split()[0] in shown.stdout.splitlines()[1]
