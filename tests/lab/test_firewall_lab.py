"""The host firewall's own script, run over real SSH on a lab machine whose dockerd runs with iptables on.

The script is the ``create`` input the program registers for the firewall under mocks (what `pulumi up`
would run), for a stack whose application server, swarm-master and db2 are lab machines and whose Pulumi
runs on this machine (the lab bridge's address, ``pulumiFrom``). It runs as the stacks' non-root login
through its sudo, and installs the systemd unit that applies the rules again at boot and after every
dockerd start. Real listeners on the "application" machine: a container port Docker publishes (the
registry's 5000) and host-network listeners (Vault's 8200 and 8201), all busybox httpd from a `docker
import`ed busybox-static rootfs. The matrix says: 5000 from the swarm members (swarm-master) and the
host's containers; 8200 from the containers, swarm-master and Pulumi; 8201 from nobody; db2 is none of
these.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import yaml

from components.platform.firewall import component as firewall
from lab import LabHost, docker, run_command, ssh_command
from lab.busybox import IMAGE, import_busybox
from lab.core import NETNS_DIR
from lab.swarm import STAGING, lab_program
from tests.support.lab_fixture import LabSession
from tests.support.rendered import script_values
from tools.offline import PROJECT, ProgramRun, reveal

REGISTRY_PORT = 5000
VAULT_PORT = 8200
VAULT_CLUSTER_PORT = 8201
LISTENERS = ("fw-published", "fw-vault", "fw-vault-cluster")


def _listen(host: LabHost) -> None:
    httpd = ["/bin/busybox", "httpd", "-f", "-h", "/www", "-p"]
    for args in (
        ["--name", "fw-published", "-p", f"{host.address}:{REGISTRY_PORT}:80", IMAGE, *httpd, "80"],
        ["--name", "fw-vault", "--network", "host", IMAGE, *httpd, f"{host.address}:{VAULT_PORT}"],
        ["--name", "fw-vault-cluster", "--network", "host", IMAGE, *httpd, f"{host.address}:{VAULT_CLUSTER_PORT}"],
    ):
        result = docker(host, "run", "-d", "--restart", "unless-stopped", *args)
        assert result.returncode == 0, result.stderr


def _remove_listeners(host: LabHost) -> None:
    docker(host, "rm", "-f", *LISTENERS)


def _wait_for_listeners(host: LabHost) -> None:
    """Until dockerd has started the listeners again (their restart policy) after it or the machine restarted."""
    for _ in range(60):
        names = docker(host, "ps", "--filter", "status=running", "--format", "{{.Names}}").stdout.split()
        if set(LISTENERS) <= set(names):
            return
        time.sleep(0.5)
    raise AssertionError(f"the listeners did not come back on {host.name}")


def reaches(source: LabHost | None, address: str, port: int) -> bool:
    """Whether an HTTP request from ``source``'s namespace (None: the lab's root namespace, where
    Pulumi runs) to ``address:port`` is answered."""
    curl = ["curl", "-s", "-o", "/dev/null", "-m", "3", f"http://{address}:{port}/"]
    argv = curl if source is None else ["nsenter", f"--net={NETNS_DIR / source.namespace}", *curl]
    return subprocess.run(argv, capture_output=True).returncode == 0


def container_reaches(host: LabHost, address: str, port: int) -> bool:
    """Whether a container on ``host``'s default bridge (as Nginx's) gets an answer from ``address:port``."""
    probe = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 {address} {port} | /bin/busybox grep -q 200"
    result = docker(host, "run", "--rm", IMAGE, "/bin/busybox", "sh", "-c", probe)
    return result.returncode == 0


def filter_rules(host: LabHost) -> str:
    """The host's filter table without comments and packet counters (a chain's counters show once they
    are set, as after a policy change): what the firewall changed, if anything."""
    saved = subprocess.run(
        ["nsenter", f"--net={NETNS_DIR / host.namespace}", "iptables-save", "-t", "filter"],
        capture_output=True, text=True, check=True,
    ).stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in saved.splitlines() if not line.startswith("#"))


def program_rules(rules: str) -> list[str]:
    """The lines of a filter table that the firewall owns: its chains and the jumps into them."""
    return [line for line in rules.splitlines() if "SAMARTH" in line]


def unit_state(host: LabHost) -> dict[str, str]:
    """What the machine's systemd says of the firewall's unit: enabled, active, and the id of its last run."""
    result = run_command(
        host,
        f"echo enabled=$(systemctl is-enabled {firewall.UNIT}); echo active=$(systemctl is-active {firewall.UNIT}); "
        f"echo run=$(systemctl show --property=InvocationID --value {firewall.UNIT})",
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.fixture()
def wired(lab_session: LabSession) -> Iterator[dict[str, object]]:
    master, node2, node3 = (lab_session.host(n) for n in ("swarm-master", "swarm-node2", "swarm-node3"))
    gateway = lab_session.lab.gateway
    staging = yaml.safe_load(STAGING.read_text())["config"]
    # Sentry and PostHog do not fit a lab host; their ports are not what this test is about.
    observability = {name: {**value, "enabled": False} for name, value in staging[f"{PROJECT}:observability"].items()}
    run = lab_program(
        {"application": node3, "swarm-master": master, "db2": node2},
        overrides={
            "swarm": {"workers": [], "encryptOverlay": True},
            "observability": observability,
            "firewall": {"operators": ["192.0.2.0/24"], "pulumiFrom": [f"{gateway}/32"]},
        },
    )
    command = run.named("command:remote:Command", "firewall-application")
    import_busybox(node3)
    _listen(node3)
    try:
        yield {"run": run, "command": command, "application": node3, "master": master, "db2": node2}
    finally:
        run_command(node3, command.inputs["delete"])
        _remove_listeners(node3)


def _expect(application: LabHost, master: LabHost, db2: LabHost) -> None:
    address = application.address
    # The published registry port: the swarm member and the host's containers, nobody else.
    assert reaches(master, address, REGISTRY_PORT)
    assert container_reaches(application, address, REGISTRY_PORT)
    assert not reaches(db2, address, REGISTRY_PORT)
    assert not reaches(None, address, REGISTRY_PORT)
    # Vault on the host network: swarm-master, Pulumi and the containers (Nginx's), not db2.
    assert reaches(master, address, VAULT_PORT)
    assert reaches(None, address, VAULT_PORT)
    assert container_reaches(application, address, VAULT_PORT)
    assert not reaches(db2, address, VAULT_PORT)
    # The cluster port of a single Vault: nobody.
    assert not reaches(master, address, VAULT_CLUSTER_PORT)
    assert not reaches(None, address, VAULT_CLUSTER_PORT)


def test_the_firewall_allows_exactly_the_matrix(lab_session: LabSession, wired: dict[str, object]) -> None:
    application, master, db2 = wired["application"], wired["master"], wired["db2"]
    assert isinstance(application, LabHost) and isinstance(master, LabHost) and isinstance(db2, LabHost)
    create = wired["command"].inputs["create"]  # type: ignore[attr-defined]
    address = application.address

    # Before: everything answers everyone (the lab's dockerd runs with iptables on, DOCKER-USER empty).
    assert reaches(db2, address, REGISTRY_PORT) and reaches(db2, address, VAULT_PORT)

    first = run_command(application, create)
    assert first.returncode == 0, first.stderr
    assert "firewall on application:" in first.stdout
    _expect(application, master, db2)
    rules = filter_rules(application)
    assert "-A DOCKER-USER -j SAMARTH-DOCKER-USER" in rules and "-A INPUT -j SAMARTH-INPUT" in rules
    # The rules file the unit loads is the one applied, and the unit is installed, enabled and has run.
    applied = script_values(wired["command"].plain_inputs["create"])["RULES"]  # type: ignore[attr-defined]
    assert (application.root / firewall.RULES_FILE.lstrip("/")).read_text() == applied
    installed = unit_state(application)
    assert installed["enabled"] == "enabled" and installed["active"] == "active", installed

    # Applying again changes nothing.
    again = run_command(application, create)
    assert again.returncode == 0, again.stderr
    assert filter_rules(application) == rules

    # A dockerd restart keeps the rules: Docker keeps DOCKER-USER's content, and the unit
    # (PartOf=docker.service) applies them again.
    # Docker rebuilds its own chains on start, in an order of its choosing: compare the program's rules.
    lab_session.lab.restart_dockerd(application)
    _wait_for_listeners(application)
    restarted = unit_state(application)
    assert restarted["active"] == "active" and restarted["run"] != installed["run"], (installed, restarted)
    assert program_rules(filter_rules(application)) == program_rules(rules)
    _expect(application, master, db2)


def test_the_firewall_unit_is_active_after_a_reboot_and_the_rules_are_in_force(
    lab_session: LabSession, wired: dict[str, object]
) -> None:
    application, master, db2 = wired["application"], wired["master"], wired["db2"]
    assert isinstance(application, LabHost) and isinstance(master, LabHost) and isinstance(db2, LabHost)
    installed = run_command(application, wired["command"].inputs["create"])  # type: ignore[attr-defined]
    assert installed.returncode == 0, installed.stderr
    rules = program_rules(filter_rules(application))
    assert rules

    # A lab machine boots with empty tables, as a server does (tests/lab/test_lab.py): only the unit can
    # bring the rules back.
    lab_session.lab.reboot(application.name)
    _wait_for_listeners(application)
    booted = unit_state(application)
    assert booted["enabled"] == "enabled" and booted["active"] == "active", booted
    assert program_rules(filter_rules(application)) == rules
    _expect(application, master, db2)


def test_a_rule_the_kernel_refuses_keeps_the_previous_rules(lab_session: LabSession, wired: dict[str, object]) -> None:
    application = wired["application"]
    assert isinstance(application, LabHost)
    command = wired["command"]
    assert run_command(application, command.inputs["create"]).returncode == 0  # type: ignore[attr-defined]
    before = filter_rules(application)
    rules_file = application.root / firewall.RULES_FILE.lstrip("/")
    kept = rules_file.read_text()
    create = reveal(command.inputs["create"])  # type: ignore[attr-defined]
    broken = create.replace("--dport 8201 -j DROP", "--dport 8201 -j NO-SUCH-CHAIN", 1)
    assert broken != create
    result = run_command(application, broken)
    assert result.returncode != 0
    assert "nothing was changed" in result.stderr or "previous rules are still in place" in result.stderr, result.stderr
    assert filter_rules(application) == before
    # The unit loads the previous rules at the next boot, not the refused ones.
    assert rules_file.read_text() == kept


def test_rules_that_would_lock_out_this_session_are_refused(lab_session: LabSession, wired: dict[str, object]) -> None:
    application = wired["application"]
    assert isinstance(application, LabHost)
    before = filter_rules(application)
    run = wired["run"]
    assert isinstance(run, ProgramRun)
    rows = [r for r in run.exports["firewall"] if r["server"] == "application"]
    assert rows[0]["service"] == "SSH"
    # The same rules, but SSH allowed only from the operators' network, not from Pulumi's address.
    script = firewall.apply_script("application", "", 22, ["192.0.2.0/24"])
    result = run_command(application, script)
    assert result.returncode != 0
    assert f"not from this session's address {lab_session.lab.gateway}" in result.stderr, result.stderr
    assert filter_rules(application) == before


def test_every_servers_rules_load_in_the_kernel(lab_session: LabSession) -> None:
    """prod's and staging's rules for all six servers (ESP, UDP, conntrack matches included) pass
    `iptables-restore --test` on a lab host whose dockerd runs with iptables, as the apply program builds them."""

    from components.shared.shell import render
    from tools.offline import run_program

    host = lab_session.host("swarm-master")
    apply_program = render("firewall-apply.sh", "samarth-firewall-apply", RULES_FILE=firewall.RULES_FILE)
    checked = 0
    for stack in ("prod", "staging"):
        run = run_program(stack)
        assert run.error is None, run.error
        for command in run.of_type("command:remote:Command"):
            if not command.name.startswith("firewall-"):
                continue
            rules = script_values(command.plain_inputs["create"])["RULES"]
            path = f"/var/tmp/lab-rules/{stack}-{command.name}.rules"
            host.write_file(path, rules, mode=0o600)
            result = subprocess.run(
                ssh_command(host, "sudo", "-n", "sh", "-s", "--", path, "--test"),
                input=apply_program, capture_output=True, text=True, timeout=60,
            )
            assert result.returncode == 0, (stack, command.name, result.stderr)
            checked += 1
    assert checked == 12
    assert "SAMARTH" not in filter_rules(host), "--test must not change anything"
