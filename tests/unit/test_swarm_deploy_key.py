"""Jenkins' way onto the swarm: the deploy user on swarm-master (swarm.deployKey, firewall.jenkins), the key
line the program writes, and the forced command run in a real shell with a fake ``docker`` on PATH: it
runs ``docker stack deploy`` of the stack file on stdin under a checked name, and refuses everything else
without calling docker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.services.swarm import component as swarm
from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools.offline import PROJECT, ProgramRun, read_stack_values, stack_file

COMMAND = "command:remote:Command"
STACK_FILE = 'version: "3.8"\nservices:\n  web:\n    image: registry.samarth.example.org/esamwad-web:1.0.0\n'


def _stack(stack: str, key: str) -> Any:
    values, _ = read_stack_values(stack_file(stack))
    return json.loads(values[f"{PROJECT}:{key}"])


def test_the_deploy_user_gets_the_key_from_jenkins_networks_with_the_forced_command(stack_run: ProgramRun) -> None:
    command = stack_run.named(COMMAND, "swarm-master-deploy-user")
    servers = _stack(stack_run.stack, "servers")
    assert command.plain_inputs["connection"]["host"] == servers["swarm-master"]["privateIp"]
    values = script_values(command.plain_inputs["create"])
    assert values["DEPLOY_USER"] == "deploy" and values["PUBLIC_KEY"] == _stack(stack_run.stack, "swarm")["deployKey"]
    assert values["FROM_NETWORKS"] == ",".join(_stack(stack_run.stack, "firewall")["jenkins"])
    assert values["WRAPPER"] == swarm.DEPLOY_WRAPPER
    # The wrapper pulls with the swarm's registry login: the SSH user's, where registry-login.sh keeps it.
    assert script_values(values["WRAPPER_TEXT"])["LOGIN_USER"] == servers["swarm-master"].get("sshUser", "samarth-devops")
    assert "deploy-user-remove" in command.plain_inputs["delete"]


def test_the_key_line_limits_the_key_to_jenkins_and_the_wrapper(tmp_path: Path) -> None:
    """The authorized_keys line as the script writes it, through a stand-in for root's tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Root's part, done here: the writes land under tmp_path; account tools answer as for an existing user.
    (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (bin_dir / "id").write_text('#!/bin/sh\ncase "$1" in -u) echo 1000 ;; -un) echo devops ;; -nG) echo deploy ;; *) exit 0 ;; esac\n')
    (bin_dir / "getent").write_text(f'#!/bin/sh\n[ "$1" = shadow ] && {{ echo "deploy:*:1"; exit 0; }}\necho "deploy:x:999:999::{tmp_path}/home:/bin/sh"\n')
    for name in ("visudo", "chown", "usermod", "useradd", "gpasswd"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "install").write_text('#!/bin/sh\nfor a; do last=$a; done\nwhile [ $# -gt 0 ]; do case "$1" in -m|-o|-g) shift 2 ;; -d) shift ;; *) mkdir -p "$1"; shift ;; esac; done\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = swarm.deploy_user_script("swarm-master", "samarth-devops", "ssh-ed25519 AAAAC3Nz jenkins@ci", ["10.20.8.0/28", "10.20.7.5/32"])
    script = script.replace(f"DEPLOY_HOME={swarm.DEPLOY_HOME}", f"DEPLOY_HOME={tmp_path}/home")
    script = script.replace(f"WRAPPER={swarm.DEPLOY_WRAPPER}", f"WRAPPER={tmp_path}/sbin/samarth-stack-deploy")
    script = script.replace(f"SUDOERS_FILE={swarm.DEPLOY_SUDOERS}", f"SUDOERS_FILE={tmp_path}/sudoers-samarth-deploy")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    line = (tmp_path / "home" / ".ssh" / "authorized_keys").read_text()
    assert line == (
        'from="10.20.8.0/28,10.20.7.5/32",restrict,'
        f'command="sudo -n {tmp_path}/sbin/samarth-stack-deploy \\"$SSH_ORIGINAL_COMMAND\\"" ssh-ed25519 AAAAC3Nz jenkins@ci\n'
    )
    assert (tmp_path / "sudoers-samarth-deploy").read_text().endswith(f"deploy ALL=(root) NOPASSWD: {tmp_path}/sbin/samarth-stack-deploy\n")
    wrapper = tmp_path / "sbin" / "samarth-stack-deploy"
    assert wrapper.read_text().startswith("#!/bin/sh\n") and wrapper.stat().st_mode & 0o777 == 0o755
    # The forced command as sshd runs it: the user's shell expands what the client asked into one argument.
    command = line.split('command="', 1)[1].split('" ssh-ed25519', 1)[0].replace('\\"', '"')
    fake = tmp_path / "fake-sudo"
    fake.mkdir()
    (fake / "sudo").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS"\n')
    (fake / "sudo").chmod(0o755)
    asked = 'deploy web; rm -rf / $(id) "x"'
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SSH_ORIGINAL_COMMAND": asked, "ARGS": str(tmp_path / "args")}
    assert subprocess.run(["/bin/sh", "-c", command], env=env, timeout=10).returncode == 0
    assert (tmp_path / "args").read_text() == f"-n\n{tmp_path}/sbin/samarth-stack-deploy\n{asked}\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"firewall": "no jenkins"}, "swarm.deployKey: set firewall.jenkins to the networks Jenkins connects from"),
        ({"deployKey": "command=\"sh\" ssh-ed25519 AAAA"}, "swarm.deployKey"),
        ({"deployKey": "ssh-ed25519 bm90IGEga2V5"}, "swarm.deployKey: the key data is not a ssh-ed25519 key"),
        ({"jenkins": ["10.20.8.1/28"]}, "firewall.jenkins[0]: '10.20.8.1/28' is not a network in CIDR form"),
        ({"jenkins": []}, "firewall.jenkins"),
    ],
)
def test_a_bad_deploy_key_or_jenkins_network_fails_before_any_resource(overrides: dict[str, Any], message: str) -> None:
    swarm_section = dict(_stack("prod", "swarm"))
    firewall = dict(_stack("prod", "firewall"))
    if overrides.get("firewall") == "no jenkins":
        firewall.pop("jenkins")
    if "deployKey" in overrides:
        swarm_section["deployKey"] = overrides["deployKey"]
    if "jenkins" in overrides:
        firewall["jenkins"] = overrides["jenkins"]
    run = program_run("prod", overrides={"swarm": swarm_section, "firewall": firewall})
    assert run.error is not None and message in str(run.error), run.error
    assert run.registrations == []


def test_without_a_deploy_key_there_is_no_deploy_user() -> None:
    run = program_run("prod", overrides={"swarm": {k: v for k, v in _stack("prod", "swarm").items() if k != "deployKey"}})
    assert run.error is None, run.error
    assert not [c for c in run.of_type(COMMAND) if c.name.endswith("-deploy-user")]


# --- the forced command, run ------------------------------------------------------------------------------


FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "$DOCKER_LOG"
for a; do last=$a; done
case "$*" in
  "stack deploy --with-registry-auth --compose-file "*) cp "$5" "$DOCKER_LOG.stack"; ls -l "$5" | cut -c1-10 > "$DOCKER_LOG.mode" ;;
esac
echo "DOCKER_CONFIG=${DOCKER_CONFIG:-}" >> "$DOCKER_LOG"
exit "${DOCKER_STATUS:-0}"
"""


def _wrapper(tmp_path: Path, *args: str, stdin: str = STACK_FILE, login_user: str = "nobody-samarth-test",
             status: int = 0) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    program = tmp_path / "samarth-stack-deploy"
    program.write_text(swarm.stack_deploy_wrapper("swarm-master", login_user))
    program.chmod(0o755)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    log = tmp_path / "docker.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKER_LOG": str(log), "DOCKER_STATUS": str(status), "TMPDIR": str(tmp_path / "tmp")}
    result = subprocess.run([str(program), *args], input=stdin, capture_output=True, text=True, env=env, timeout=30)
    return result, log.read_text().splitlines() if log.exists() else []


def test_the_wrapper_deploys_the_stack_file_from_stdin_under_the_asked_name(tmp_path: Path) -> None:
    result, calls = _wrapper(tmp_path, "deploy samarth_web-2")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 2 and calls[0].startswith("stack deploy --with-registry-auth --compose-file ")
    assert calls[0].endswith(" samarth_web-2")
    assert (tmp_path / "docker.log.stack").read_text() == STACK_FILE
    assert (tmp_path / "docker.log.mode").read_text().strip() == "-rw-------"  # root-only while it lives
    assert list((tmp_path / "tmp").iterdir()) == []  # and gone after
    # A login user without a docker login: the nodes would pull without credentials, and it says so.
    assert calls[1] == "DOCKER_CONFIG=" and "no docker login" in result.stderr
    # The swarm's login, where the user's registry login keeps it, is what --with-registry-auth hands over.
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text("{}")
    getent = tmp_path / "bin" / "getent"
    getent.write_text(f"#!/bin/sh\necho 'samarth-devops:x:1000:1000::{home}:/bin/bash'\n")
    getent.chmod(0o755)
    result, calls = _wrapper(tmp_path, "deploy samarth", login_user="samarth-devops")
    assert result.returncode == 0, result.stderr
    assert calls[1] == f"DOCKER_CONFIG={home}/.docker"


@pytest.mark.parametrize(
    "request_",
    [
        None,  # an interactive login: no command at all
        "",
        "docker ps",
        "docker stack rm samarth",
        "deploy",
        "deploy ",
        "deploy Samarth",
        "deploy -c /etc/passwd samarth",
        "deploy samarth extra",
        "deploy samarth; id",
        "deploy $(id)",
        "deploy ../samarth",
        "deploy _samarth",
        "deploy samarth\nid",
        "deploy " + "a" * (swarm.DEPLOY_MAX_NAME + 1),
        "sh -c 'docker ps'",
        "internal-sftp",
    ],
)
def test_the_wrapper_refuses_anything_but_a_stack_deploy(tmp_path: Path, request_: str | None) -> None:
    result, calls = _wrapper(tmp_path, *([] if request_ is None else [request_]))
    assert result.returncode != 0 and "refused" in result.stderr, result.stderr
    assert calls == []


def test_the_wrapper_refuses_two_arguments(tmp_path: Path) -> None:
    result, calls = _wrapper(tmp_path, "deploy", "samarth")
    assert result.returncode != 0 and "refused" in result.stderr and calls == []


@pytest.mark.parametrize("stdin", ["", "x" * (swarm.DEPLOY_MAX_BYTES + 1)])
def test_the_wrapper_refuses_an_empty_or_oversized_stack_file(tmp_path: Path, stdin: str) -> None:
    result, calls = _wrapper(tmp_path, "deploy samarth", stdin=stdin)
    assert result.returncode != 0 and "refused" in result.stderr and calls == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_deploy_fails_and_leaves_no_file(tmp_path: Path) -> None:
    result, calls = _wrapper(tmp_path, "deploy samarth", status=3)
    assert result.returncode != 0 and "docker stack deploy of samarth failed (exit 3)" in result.stderr
    assert len(calls) == 2 and list((tmp_path / "tmp").iterdir()) == []
