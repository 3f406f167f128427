"""The swarm component's own scripts, run over real SSH against three lab hosts (sshd + dockerd).

See lab/swarm.py for how the scripts are taken from the program under mocks and run as the
engine would. Each test starts from three hosts in no swarm.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from components.services.edge.settings import LETSENCRYPT_STAGING_ROOTS
from components.services.registry import component as registry
from components.services.swarm.component import login_script
from lab import docker, ssh_command
from lab.swarm import STAGING, SWARM_HOSTS, SwarmScripts, lab_program, lab_servers, nodes, reset, swarm_state
from tests.support.lab_fixture import LabSession
from tools.offline import reveal

WORKERS = ("swarm-node2", "swarm-node3")
STAGING_SWARM = yaml.safe_load(STAGING.read_text())["config"]["samarth-infra:swarm"]


@pytest.fixture()
def lab(lab_session: LabSession) -> Iterator[LabSession]:
    reset(lab_session.hosts)
    yield lab_session
    reset(lab_session.hosts)


def _scripts(lab: LabSession, **swarm) -> SwarmScripts:
    """The program's swarm scripts for the lab stack, with ``swarm`` settings changed from staging's.
    The lab has no registry to log in to: registryLogin is off here, the login script is tested below."""
    hosts = {name: lab.host(name) for name in SWARM_HOSTS}
    settings = {**STAGING_SWARM, **swarm, "registryLogin": False}
    return SwarmScripts(lab_program(hosts, {"swarm": settings}), hosts)


def _ok(outcomes) -> list[str]:
    for outcome in outcomes:
        assert outcome.returncode == 0, f"{outcome.name}: {outcome.stderr}"
    return [o.stderr.strip() for o in outcomes]


def _observed(lab: LabSession) -> dict:
    master = lab.host("swarm-master")
    # The manager allocates a new network's driver state asynchronously: until then Driver is "".
    deadline = time.monotonic() + 30
    while True:
        network = json.loads(docker(master, "network", "inspect", "application_default").stdout)[0]
        if network["Driver"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {"nodes": nodes(master), "network": network}


def test_scripts_form_the_swarm_and_a_second_run_changes_nothing(lab: LabSession) -> None:
    scripts = _scripts(lab)
    _ok(scripts.converge())

    first = _observed(lab)
    by_name = first["nodes"]
    assert sorted(by_name) == sorted(SWARM_HOSTS)
    master = by_name["swarm-master"]
    assert (master["role"], master["leader"], master["state"]) == ("manager", True, "ready")
    assert master["address"] == lab.host("swarm-master").address
    for worker in WORKERS:
        node = by_name[worker]
        assert (node["role"], node["state"], node["availability"]) == ("worker", "ready", "active")
        assert node["address"] == lab.host(worker).address
    assert by_name["swarm-node2"]["labels"]["zone"] == "a" and by_name["swarm-node3"]["labels"]["zone"] == "b"
    servers = lab_servers(scripts.hosts)
    for name, node in by_name.items():
        assert node["labels"]["role"] == ("manager" if name == "swarm-master" else "worker")
        assert node["labels"]["memory_mib"] == str(servers[name]["memoryMib"])
    network = first["network"]
    assert (network["Driver"], network["Scope"], network["Attachable"]) == ("overlay", "swarm", True)
    assert network["Options"].get("encrypted") == "true"

    messages = _ok(scripts.converge())
    second = _observed(lab)
    assert second == first
    assert any("swarm-master is already a manager" in m for m in messages)
    for worker in WORKERS:
        assert any(f"{worker} has already joined the swarm of swarm-master" in m for m in messages)
        assert any(f"{worker} already carries its labels" in m for m in messages)


def test_removing_a_worker_drains_it_makes_it_leave_and_leaves_the_others_healthy(lab: LabSession) -> None:
    scripts = _scripts(lab)
    _ok(scripts.converge())
    node3_id = nodes(lab.host("swarm-master"))["swarm-node3"]["id"]

    # swarm-node3 taken out of config: the new program has none of its commands; the engine deletes
    # the old ones (from its state, i.e. the previous program's) dependents first.
    smaller = _scripts(lab, workers=["swarm-node2"], labels={"swarm-node2": {"zone": "a"}})
    gone = [name for name in scripts.commands_of("swarm-node3") if name not in smaller.commands_of("swarm-node3")]
    assert gone == scripts.commands_of("swarm-node3") and gone
    messages = _ok(scripts.remove(gone))
    assert [m.splitlines()[-1] for m in messages] == [
        "swarm-node3 drained",
        "swarm-node3 left the swarm",
        f"removed node {node3_id} of swarm-node3 ({lab.host('swarm-node3').address})",
    ]
    after = nodes(lab.host("swarm-master"))
    assert sorted(after) == ["swarm-master", "swarm-node2"]
    assert all(n["state"] == "ready" and n["availability"] == "active" for n in after.values())
    assert swarm_state(lab.host("swarm-node3")) == "inactive"

    # The smaller program converges without touching anything; the deletes are safe to repeat.
    smaller.real_secrets = scripts.real_secrets
    _ok(smaller.converge())
    again = _ok(scripts.remove(gone))
    assert "nothing to drain" in again[0] and "nothing to leave" in again[1] and "nothing to remove" in again[2]
    assert nodes(lab.host("swarm-master")) == after

    # Put back in config, it rejoins as a fresh node with its labels.
    _ok(scripts.converge())
    back = nodes(lab.host("swarm-master"))
    assert sorted(back) == sorted(SWARM_HOSTS) and back["swarm-node3"]["state"] == "ready"
    assert back["swarm-node3"]["labels"]["zone"] == "b"


def test_the_drain_refuses_when_the_node_list_cannot_be_read(lab: LabSession) -> None:
    """A manager whose swarm lost its leader answers `docker node ls` with an error. A one-manager lab
    swarm cannot lose its leader, so a stub `docker` first on the master's PATH fails `node ls` (as
    dockerd does then) and hands every other call to the real client."""
    scripts = _scripts(lab)
    _ok(scripts.converge())
    master = lab.host("swarm-master")
    stub = master.write_file(
        "/opt/lab-stub/docker",
        "#!/bin/sh\n"
        'if [ "$1 $2" = "node ls" ]; then\n'
        '  echo "Error response from daemon: rpc error: code = Unknown desc = The swarm does not have a leader." >&2\n'
        "  exit 1\n"
        "fi\n"
        'exec /usr/bin/docker "$@"\n',
        mode=0o755,
    )
    drain = scripts.command("swarm-node3-swarm-node").inputs["delete"]
    try:
        refused = subprocess.run(
            ssh_command(master, f"PATH=/opt/lab-stub:$PATH; export PATH\n{drain}"), capture_output=True, text=True, timeout=60
        )
    finally:
        stub.unlink()
    assert refused.returncode != 0
    assert "swarm-drain[swarm-node3]: cannot read the node list on swarm-master (has the swarm lost its leader?" in refused.stderr
    assert "nothing to drain" not in refused.stderr
    assert nodes(master)["swarm-node3"]["availability"] == "active"
    # The same script with the real client drains as before.
    drained = scripts.execute("swarm-node3-swarm-node", "delete")
    assert drained.returncode == 0 and "swarm-node3 drained" in drained.stderr
    assert nodes(master)["swarm-node3"]["availability"] == "drain"


def test_label_changes_in_config_are_applied_and_dropped_labels_removed(lab: LabSession) -> None:
    _ok(_scripts(lab).converge())
    changed = _scripts(lab, labels={"swarm-node2": {"disk": "ssd"}})
    _ok(changed.converge())
    by_name = nodes(lab.host("swarm-master"))
    assert by_name["swarm-node2"]["labels"] == {"role": "worker", "memory_mib": by_name["swarm-node2"]["labels"]["memory_mib"], "disk": "ssd"}
    assert "zone" not in by_name["swarm-node3"]["labels"]


def test_failure_messages_name_the_problem(lab: LabSession) -> None:
    scripts = _scripts(lab)
    master, node2, node3 = (lab.host(n) for n in SWARM_HOSTS)

    # A worker that manages a swarm of its own.
    assert docker(node3, "swarm", "init", "--advertise-addr", node3.address).returncode == 0
    outcomes = {o.name: o for o in scripts.converge()}
    failed = outcomes["swarm-node3-swarm-join"]
    assert failed.returncode != 0
    assert all(o.returncode == 0 for name, o in outcomes.items() if name != failed.name)
    assert f"swarm-node3 is a manager of a swarm advertised on {node3.address}" in failed.stderr

    # A worker that is a worker of another swarm.
    reset([node2])
    token = docker(node3, "swarm", "join-token", "-q", "worker").stdout.strip()
    assert docker(node2, "swarm", "join", "--token", token, f"{node3.address}:2377").returncode == 0
    joined_elsewhere = scripts.execute("swarm-node2-swarm-join")
    assert joined_elsewhere.returncode != 0
    assert (
        f"swarm-node2 already belongs to another swarm (managers: {node3.address}:2377), "
        f"not to the swarm of swarm-master ({master.address}:2377)" in joined_elsewhere.stderr
    )
    assert swarm_state(node2) == "active"  # left alone: the operator decides

    # The master is a worker elsewhere.
    reset([master, node2])
    assert docker(master, "swarm", "join", "--token", token, f"{node3.address}:2377").returncode == 0
    init = scripts.execute("swarm-master-swarm-init")
    assert init.returncode != 0 and init.stdout == ""
    assert f"swarm-master is a worker in another swarm (managers: {node3.address}:2377" in init.stderr

    # The master is unreachable on 2377: the join fails clearly and does not linger half-joined.
    reset([master, node3])
    unreachable = scripts.execute("swarm-node2-swarm-join")
    assert unreachable.returncode != 0
    assert f"swarm-node2 could not join the swarm of swarm-master at {master.address}:2377" in unreachable.stderr
    assert "reachable from swarm-node2 on 2377/tcp" in unreachable.stderr
    assert swarm_state(node2) == "inactive"
    # No secret in what the operator sees.
    assert not any(secret in unreachable.stderr for secret in scripts.real_secrets.values())


class ArgvWatcher:
    """Reads every process's /proc/<pid>/cmdline, over and over, from a thread: what `ps` shows."""

    def __init__(self, secret: str, marker: str) -> None:
        self.secret, self.marker = secret.encode(), marker.encode()
        self.hits: list[str] = []
        self.marked = 0
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if self.secret in cmdline:
                    self.hits.append(cmdline.replace(self.secret, b"<secret>").replace(b"\0", b" ").decode(errors="replace"))
                if self.marker in cmdline:
                    self.marked += 1
            self.passes += 1

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_the_join_token_is_in_no_process_argv_while_the_workers_join(lab: LabSession) -> None:
    scripts = _scripts(lab)
    init = scripts.execute("swarm-master-swarm-init")
    assert init.returncode == 0, init.stderr
    token = json.loads(init.stdout)["workerToken"]

    # The watcher sees a token that is in some argv (a control: it would have caught `--token`).
    with ArgvWatcher(token, "samarth-argv-control") as control:
        subprocess.run(["sh", "-c", "sleep 0.5", "samarth-argv-control", token], check=True)
    assert control.hits and control.marked

    with ArgvWatcher(token, "http://docker/swarm/join") as watcher:
        outcomes = scripts.converge()
    _ok(outcomes)
    assert {n["role"] for n in nodes(lab.host("swarm-master")).values()} == {"manager", "worker"}
    assert watcher.marked > 0, "the watcher never saw the join's curl: it proves nothing"
    assert watcher.passes > 10
    assert watcher.hits == []


REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@pytest.mark.skipif(not os.path.exists(REGISTRY), reason="Debian docker-registry not installed (.ci/run installs it)")
def test_registry_login_script_logs_in_once_and_refuses_a_wrong_password(lab: LabSession, tmp_path: Path) -> None:
    """The program's login script (the same function, its stdin as registered) against a real registry
    with htpasswd auth, listening on loopback inside swarm-master's namespace."""
    hosts = {name: lab.host(name) for name in SWARM_HOSTS}
    run = lab_program(hosts, {"swarm": {**STAGING_SWARM, "registryLogin": True}})
    registered = run.named("command:remote:Command", "swarm-master-registry-login")
    server, username = run.exports["registry"]["server"], run.exports["registry"]["username"]
    # The lab stack keeps staging's ACME directory, Let's Encrypt's staging: the login trusts its roots.
    assert registered.inputs["create"] == login_script("swarm-master", server, username, LETSENCRYPT_STAGING_ROOTS.read_text())
    # The password alone is on stdin: the user name is not secret.
    (password,) = reveal(registered.inputs["stdin"]).splitlines()

    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "htpasswd").write_text(f"{username}:{digest}\n")
    (tmp_path / "config.yml").write_text(registry.render_config("http://127.0.0.1:5000", "http-secret"))
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": "127.0.0.1:5000",
        "REGISTRY_HTTP_DEBUG_ADDR": "127.0.0.1:5001",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH_HTPASSWD_PATH": str(tmp_path / "htpasswd"),
    }
    master = hosts["swarm-master"]
    with open(tmp_path / "registry.log", "w") as log:
        process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{master.namespace}", REGISTRY, "serve", str(tmp_path / "config.yml")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    script = login_script("swarm-master", "127.0.0.1:5000", username)
    stored_at = master.docker_config / "config.json"

    def login(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(ssh_command(master, script), input=stdin, capture_output=True, text=True, timeout=60)

    try:
        deadline = time.monotonic() + 15
        probe = ["nsenter", f"--net=/var/run/netns/{master.namespace}", sys.executable, "-c",
                 "import socket; socket.create_connection(('127.0.0.1', 5000), 1)"]
        while subprocess.run(probe, capture_output=True).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.2)

        first = login(reveal(registered.inputs["stdin"]))
        assert first.returncode == 0, first.stderr
        assert "swarm-master logged in to 127.0.0.1:5000" in first.stderr
        stored = stored_at.read_text()
        assert "127.0.0.1:5000" in json.loads(stored)["auths"]

        again = login(reveal(registered.inputs["stdin"]))
        assert again.returncode == 0 and "swarm-master is already logged in to 127.0.0.1:5000" in again.stderr
        assert stored_at.read_text() == stored

        wrong = login("not-the-password\n")
        assert wrong.returncode != 0
        assert "registry-login[swarm-master]: failed while logging in to 127.0.0.1:5000" in wrong.stderr
        assert password not in wrong.stderr + wrong.stdout and "not-the-password" not in wrong.stderr
    finally:
        process.terminate()
        process.wait(timeout=10)
        stored_at.unlink(missing_ok=True)  # the next module's logins start from none, as on a fresh server


# A one-binary image imported into each lab daemon (the lab has no registry). Its name points at a
# registry that refuses connections at once, so a node's pull attempt fails fast and it runs the
# local image.
SLEEP_IMAGE = "127.0.0.1:9/samarth-lab/sleep:1"


def _import_sleep_image(hosts) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", dereference=True) as tar:
        for path in ("/bin/sleep", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
            tar.add(path, arcname=path.lstrip("/"))
    for host in hosts:
        imported = subprocess.run(
            ["docker", "-H", host.docker_host, "import", "-", SLEEP_IMAGE], input=archive.getvalue(), capture_output=True
        )
        assert imported.returncode == 0, imported.stderr


def _running_tasks(master) -> list[str]:
    listed = docker(master, "service", "ps", "sleeper", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
    return sorted(line.split()[0] for line in listed.stdout.splitlines() if " Running " in f"{line} ")


@pytest.mark.skipif(not os.path.exists("/lib64/ld-linux-x86-64.so.2"), reason="needs an x86-64 glibc machine for the test image")
def test_removing_a_worker_moves_its_tasks_off_before_it_leaves(lab: LabSession) -> None:
    master, node3 = lab.host("swarm-master"), lab.host("swarm-node3")
    _import_sleep_image(lab.hosts)
    scripts = _scripts(lab)
    _ok(scripts.converge())
    created = docker(
        master, "service", "create", "--detach", "--name", "sleeper", "--replicas", "2",
        "--constraint", "node.role==worker", "--placement-pref", "spread=node.labels.zone",
        "--stop-grace-period", "2s", SLEEP_IMAGE, "/bin/sleep", "100000",
    )
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 60
    while _running_tasks(master) != ["swarm-node2", "swarm-node3"]:
        assert time.monotonic() < deadline, docker(master, "service", "ps", "sleeper").stdout
        time.sleep(0.5)

    # Engine order (node, join, seat), one at a time to look between them.
    order = [r.name for r in reversed(scripts.commands) if r.name in scripts.commands_of("swarm-node3")]
    assert order == ["swarm-node3-swarm-node", "swarm-node3-swarm-join", "swarm-node3-swarm-seat"]
    drain = scripts.execute(order[0], "delete")
    assert drain.returncode == 0 and "swarm-node3 drained" in drain.stderr
    # The drain returns only once the worker's task has stopped: nothing runs there before it leaves.
    assert docker(node3, "ps", "-q").stdout.strip() == ""
    _ok([scripts.execute(order[1], "delete"), scripts.execute(order[2], "delete")])
    deadline = time.monotonic() + 60
    while _running_tasks(master) != ["swarm-node2", "swarm-node2"]:
        assert time.monotonic() < deadline, docker(master, "service", "ps", "sleeper").stdout
        time.sleep(0.5)
    docker(master, "service", "rm", "sleeper")
