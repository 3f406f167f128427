"""No secret on any command line: every rendered container command, entrypoint and
healthcheck, and every remote script, as the program registers them for prod and staging. A secret
reaches a process by stdin, a root-only file or its environment, never by argv; a command whose
stdin or stdout carries a secret never gets its previous output back (``addPreviousOutputInEnv``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.argv_check import Leak, script_leaks, secret_atoms, text_leaks
from tests.unit.test_backup_offsite import _installs, s3_offsite_run
from tools.offline import TEST_SECRETS, ProgramRun, is_secret, reveal, secret_strings

CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"
SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")
# Modes a file holding a secret may have inside a container: readable by its owner (and group) only.
PRIVATE_MODES = ("0400", "0440", "0600", "0640")


def atoms_of(run: ProgramRun) -> set[str]:
    """What a secret looks like in this run: the secret config values, and every output its resource
    marks secret (generated passwords, private keys, tokens, Vault's init output)."""
    values = list(TEST_SECRETS.values())
    for registration in run.registrations:
        for key in registration.additional_secret_outputs:
            values += secret_strings(registration.outputs.get(key))
    atoms = secret_atoms(values)
    assert len(atoms) > 20  # passwords, tokens, keys: the check has something to look for
    return atoms


def _shell_script(argv: list[str]) -> str | None:
    """The script of ``sh -c SCRIPT ...``, if ``argv`` is one."""
    if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c":
        return argv[2]
    return None


def container_leaks(run: ProgramRun, atoms: set[str]) -> list[Leak]:
    leaks: list[Leak] = []
    for container in run.of_type(CONTAINER):
        inputs = container.plain_inputs
        env = [str(e) for e in inputs.get("envs") or []]
        secret_env = {e.split("=", 1)[0] for e in env if secret_atoms([e.split("=", 1)[1]]) & atoms}
        command = [str(a) for a in inputs.get("command") or []]
        entrypoint = [str(a) for a in inputs.get("entrypoints") or []]
        tests = [str(a) for a in (inputs.get("healthcheck") or {}).get("tests") or []]
        for what, argv in (("command", command), ("entrypoint", entrypoint), ("healthcheck", tests)):
            where = f"{container.name} {what}"
            leaks += text_leaks(where, "\0".join(argv), atoms)
            script = _shell_script(argv) if what != "healthcheck" else (tests[1] if tests[:1] == ["CMD-SHELL"] else _shell_script(tests[1:]))
            if script:
                leaks += script_leaks(where, script, secret_env)
        for upload in inputs.get("uploads") or []:
            content = str(upload.get("content") or "")
            if secret_atoms([content]) & atoms and upload.get("permissions") not in PRIVATE_MODES:
                leaks.append(Leak(f"{container.name} upload {upload['file']}", f"holds a secret with mode {upload.get('permissions')}"))
    return leaks


def script_inputs(run: ProgramRun) -> list[tuple[str, str, bool]]:
    """(where, script, stdin is secret) of every remote command's create, update and delete."""
    scripts = []
    for registration in run.of_type(COMMAND):
        secret_stdin = is_secret(registration.inputs.get("stdin"))
        for phase in ("create", "update", "delete"):
            text = reveal(registration.inputs.get(phase))
            if text:
                scripts.append((f"{registration.name} {phase}", str(text), secret_stdin))
    return scripts


def test_no_container_command_or_healthcheck_carries_a_secret(stack_run: ProgramRun) -> None:
    leaks = container_leaks(stack_run, atoms_of(stack_run))
    assert not leaks, "\n".join(map(str, leaks))


def test_no_remote_script_puts_a_secret_on_a_command_line(stack_run: ProgramRun) -> None:
    atoms = atoms_of(stack_run)
    scripts = script_inputs(stack_run)
    assert any(secret for _, _, secret in scripts)
    leaks = []
    for where, script, secret_stdin in scripts:
        leaks += text_leaks(where, script, atoms)
        leaks += script_leaks(where, script, secret_stdin=secret_stdin)
    assert not leaks, "\n".join(map(str, leaks))


# The commands whose stdin or stdout holds a secret. A new one must be added here on purpose, and
# gets `addPreviousOutputInEnv: false` (pulumi-command would otherwise hand its last stdout and stderr
# to the next run as environment variables).
SECRET_BEARING = {
    "swarm-master-swarm-init": "stdout: the join tokens",
    "swarm-node2-swarm-join": "stdin: the worker join token",
    "swarm-node3-swarm-join": "stdin: the worker join token",
    "swarm-master-registry-login": "stdin: the registry password",
    "swarm-node2-registry-login": "stdin: the registry password",
    "swarm-node3-registry-login": "stdin: the registry password",
    "application-vault-init": "stdout: the unseal keys and root token",
    "application-vault-unseal": "stdin: the unseal keys",
    "observability-sentry-install": "stdin: the admin password",
    "observability-posthog-install": "stdin: PostHog's secrets",
    "nginx-certificates-install": "stdin: the ACME account key",
    "backups-db1-install": "stdin: the restic repository password and S3 keys",
    "backups-db2-install": "stdin: the restic repository password and S3 keys",
    "backups-swarm-master-install": "stdin: the restic repository password and S3 keys",
    "backups-application-install": "stdin: the restic repository password and the Vault snapshot AppRole",
}


def _secret_bearing(registration: Any) -> bool:
    return is_secret(registration.inputs.get("stdin")) or "stdout" in registration.additional_secret_outputs


# And one per database container: its password check reads the password on stdin.
PASSWORD_CHECK = re.compile(r"^db[12]-(postgres|redis|rabbitmq|opensearch|elasticsearch)-[a-z0-9-]+-password$")


def test_commands_with_secret_stdin_or_stdout_never_get_their_previous_output(stack_run: ProgramRun) -> None:
    bearing = {r.name: r for r in stack_run.of_type(COMMAND) if _secret_bearing(r)}
    checks = {name for name in bearing if PASSWORD_CHECK.match(name)}
    containers = [r for r in stack_run.of_type(CONTAINER) if r.name.startswith(("db1-", "db2-"))]
    assert len(checks) == len(containers)
    assert set(bearing) - checks == set(SECRET_BEARING)
    for name, registration in bearing.items():
        why = SECRET_BEARING.get(name, "stdin: the database password")
        assert registration.inputs.get("addPreviousOutputInEnv") is False, f"{name} ({why})"
        if "stdout" in registration.additional_secret_outputs:
            # Nor does the engine log what it prints.
            assert registration.inputs.get("logging") == "none", name


def test_the_offsite_installs_put_no_secret_on_a_command_line() -> None:
    """The S3 off-site repository's secret key and password reach the backup installs on a secret stdin;
    their scripts pass neither to a command (tests/unit/test_backup_offsite.py checks the rest)."""
    run = s3_offsite_run()
    for install in _installs(run).values():
        assert is_secret(install.inputs.get("stdin"))
        assert not script_leaks(install.name, reveal(install.inputs["create"]), secret_stdin=True)


# --- the checker itself: each kind of leak it must find, and the safe forms it must accept ----------

READ = 'IFS= read -r token\n'


@pytest.mark.parametrize(
    "script, secret_stdin, variables, leaks",
    [
        (READ + 'docker swarm join --token "$token" 10.0.0.1:2377\n', True, (), ["$token (secret) is an argument of the command docker"]),
        (READ + 'printf \'{"JoinToken":"%s"}\' "$token" | curl --unix-socket /run/docker.sock -d @- http://d/swarm/join\n', True, (), []),
        ('keys=$(cat)\nfor key in $keys; do vault write key="$key"; done\n', True, (), ["$key (secret) is an argument of the command vault"]),
        ('t=$(docker swarm join-token -q worker)\nx="prefix $t"\nlogger "$x"\n', False, (), ["$x (secret) is an argument of the command logger"]),
        ('dc() { docker compose "$@"; }\n' + READ + 'dc run web createuser --password "$token"\n', True, (), ["of the function dc"]),
        ('exec docker-entrypoint.sh redis-server --requirepass "$REDISCLI_AUTH"', False, ("REDISCLI_AUTH",), ["of the command docker-entrypoint.sh"]),
        ('curl -fsS -u "elastic:$ELASTIC_PASSWORD" http://127.0.0.1:9200', False, ("ELASTIC_PASSWORD",), ["of the command curl"]),
        ('redis-cli -h 127.0.0.1 ping | grep -q PONG', False, ("REDISCLI_AUTH",), []),
        (READ + '[ -n "$token" ] || fail "no token"\necho "$token" >&2\n', True, (), []),
        # Read from a stdin that is not secret: nothing read is a secret.
        ('IFS= read -r name\nuseradd "$name"\n', False, (), []),
    ],
)
def test_the_checker_finds_argv_leaks(script: str, secret_stdin: bool, variables: tuple[str, ...], leaks: list[str]) -> None:
    found = [leak.what for leak in script_leaks("t", script, variables, secret_stdin)]
    assert len(found) == len(leaks), found
    for expected, actual in zip(leaks, found, strict=True):
        assert expected in actual
