"""The rehearsal's engine (lab/rehearsal.py) without machines: the whole program run with kinds that only
record what they are asked, to show the engine's decisions (create, nothing, update, replace, delete) as
``pulumi up`` makes them; and the kinds that generate values (random, tls) for real.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from harness.stand_ins import stand_in_outputs
from lab.rehearsal import EVERY_UP, PREVIEWED, REPLACED, STAND_IN, Operation, Rehearsal, RehearsalMonitor, State
from lab.rehearsal_docker import docker_kinds
from lab.rehearsal_kinds import (
    CertRequest,
    Kind,
    LocallySignedCert,
    PrivateKey,
    RandomBytes,
    RandomPassword,
    RehearsalError,
    RemoteCommand,
    Resource,
    Saved,
    SelfSignedCert,
    kinds,
)
from lab.rehearsal_minio import minio_kinds
from lab.rehearsal_vault import vault_kinds
from tests.support.program_runs import program_run
from tools.offline import ProgramRun, read_yaml, run_program, stack_file


class Recorder(Kind):
    """Performs nothing; answers with the mocks' outputs; remembers each call."""

    def __init__(self, real: Kind | None = None) -> None:
        self.real = real
        self.calls: list[tuple[str, str]] = []

    def replaces(self, changed: set[str]) -> set[str]:
        return self.real.replaces(changed) if self.real is not None else changed

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        self.calls.append(("create", resource.urn))
        outputs = stand_in_outputs(resource.type, resource.name, resource.inputs)
        if resource.type == "command:remote:Command":
            outputs = {"stdout": "", "stderr": "", **outputs}
        return f"{resource.name}-id", outputs

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        self.calls.append(("update", resource.urn))
        return old.outputs

    def delete(self, old: Saved) -> None:
        self.calls.append(("delete", old.id))


class Everything(dict[str, Kind]):
    """A recorder for every resource type (commands replaced only by their triggers, as the provider does)."""

    def __init__(self) -> None:
        super().__init__()
        self.command = Recorder(RemoteCommand())
        self.other = Recorder()

    def get(self, key: str, default: Kind | None = None) -> Kind:  # type: ignore[override]
        return self.command if key == "command:remote:Command" else self.other

    def __getitem__(self, key: str) -> Kind:
        return self.get(key)


def _rehearse(state: Path, kinds: Everything, options: dict[str, Any] | None = None, **overrides: Any) -> tuple[ProgramRun, RehearsalMonitor]:
    monitor = RehearsalMonitor(State.load(state), kinds, **(options or {}))
    run = run_program("staging", monitor=monitor, overrides=overrides or None)
    assert run.error is None, run.error
    monitor.finish()
    return run, monitor


@dataclass(frozen=True)
class FirstRun:
    """Staging rehearsed from an empty state: what the engine registered and was asked, and the state
    it left (each test goes on from a copy of its own)."""

    run: ProgramRun
    kinds: Everything
    state: Path

    def state_for(self, tmp_path: Path) -> Path:
        state = tmp_path / "state.json"
        shutil.copy2(self.state, state)
        return state


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """The first rehearsal is the same in every test (one whole-program run per configuration)."""
    state = tmp_path_factory.mktemp("first-rehearsal") / "state.json"
    kinds = Everything()
    run, _ = _rehearse(state, kinds)
    return FirstRun(run, kinds, state)


def test_a_first_run_creates_everything_and_a_second_does_nothing(first_run: FirstRun, tmp_path: Path) -> None:
    run, kinds, state = first_run.run, first_run.kinds, first_run.state
    custom = [r for r in run.registrations if r.custom and not r.type.startswith("pulumi:providers:")]
    assert sorted(urn for _, urn in kinds.command.calls + kinds.other.calls) == sorted(r.urn for r in custom)
    assert oct(state.stat().st_mode & 0o777) == "0o600", "the state holds generated secrets"

    # A second run: nothing but the replacements the program makes on every `up` by design, each with its reason.
    again = Everything()
    _, second = _rehearse(first_run.state_for(tmp_path), again)
    assert again.other.calls == []
    changes = [op for op in second.operations if op.operation != "same"]
    assert changes and {op.urn for op in changes} == {urn for _, urn in again.command.calls if not urn.endswith("-id")}
    for op in changes:
        assert op.operation == "delete" or op.detail == EVERY_UP["vault-unseal"], op


def test_changed_inputs_update_and_changed_triggers_replace_create_first(first_run: FirstRun, tmp_path: Path) -> None:
    state = first_run.state_for(tmp_path)
    # Other log bounds: the log-defaults commands' script text changes (an update runs it again); the
    # containers take the log options themselves, and any change but restart and limits replaces one.
    _, monitor = _rehearse(state, Everything(), logs={"maxSize": "20m", "maxFile": 3})
    changes = {(op.type, op.operation, op.detail) for op in monitor.operations
               if op.operation != "same" and op.detail not in (EVERY_UP["vault-unseal"], "replaced")}
    assert changes == {("command:remote:Command", "update", "changed: create"),
                       ("docker:index/container:Container", "replace", "changed: logOpts")}

    # A server's declared size is in its preflight's triggers: that command is replaced, the new one
    # created during the program, the old one deleted after it.
    kinds = Everything()
    _, monitor = _rehearse(state, kinds, servers=_servers_with(memory_mib=2048, server="db1"))
    replaced = [op for op in monitor.operations if op.operation == "replace" and "triggers" in op.detail.split(": ")[-1]
                and op.detail != EVERY_UP["vault-unseal"]]
    assert [op.urn.rsplit("::", 1)[1] for op in replaced] == ["db1-preflight"]
    (created,) = [i for i, (verb, urn) in enumerate(kinds.command.calls) if verb == "create" and urn == replaced[0].urn]
    (deleted,) = [i for i, (verb, urn) in enumerate(kinds.command.calls) if verb == "delete" and urn.startswith("db1-preflight")]
    assert created < deleted
    assert not any(urn.endswith(REPLACED) for urn in json.loads(state.read_text())["resources"])


def _servers_with(memory_mib: int, server: str) -> dict[str, Any]:
    servers = read_yaml(stack_file("staging"))["config"]["samarth-infra:servers"]
    return {**servers, server: {**servers[server], "memoryMib": memory_mib}}


def test_a_resource_no_longer_in_the_program_is_deleted(first_run: FirstRun, tmp_path: Path) -> None:
    state = first_run.state_for(tmp_path)
    kinds = Everything()
    _, monitor = _rehearse(state, kinds, backups={"enabled": False})
    deleted = [op for op in monitor.operations if op.operation == "delete" and op.detail == "no longer in the program"]
    assert deleted and all("::backups-" in op.urn for op in deleted)
    remaining = json.loads(state.read_text())["resources"]
    assert not any(op.urn in remaining for op in deleted)


def test_a_preview_lists_what_an_up_would_do_with_its_cause_and_changes_nothing(first_run: FirstRun, tmp_path: Path) -> None:
    state = first_run.state_for(tmp_path)
    before = state.read_bytes()
    kinds = Everything()
    _, monitor = _rehearse(state, kinds, {"preview": True}, logs={"maxSize": "20m", "maxFile": 3}, backups={"enabled": False})
    assert kinds.command.calls == kinds.other.calls == [] and state.read_bytes() == before
    planned = {(op.operation, op.type, op.detail) for op in monitor.operations if op.operation != "same"}
    assert ("update", "command:remote:Command", "changed: create") in planned
    assert ("replace", "docker:index/container:Container", "changed: logOpts") in planned
    assert ("replace", "command:remote:Command", EVERY_UP["vault-unseal"]) in planned
    deleted = [op for op in monitor.operations if op.operation == "delete"]
    assert deleted and all("::backups-" in op.urn and op.detail == "no longer in the program" for op in deleted)
    assert {op.outcome for op in monitor.operations if op.operation != "same"} == {PREVIEWED}


def test_replace_forces_one_resource_and_target_leaves_the_others_alone(first_run: FirstRun, tmp_path: Path) -> None:
    state = first_run.state_for(tmp_path)
    registry = first_run.run.named("docker:index/container:Container", "registry-container").urn
    kinds = Everything()
    _, monitor = _rehearse(state, kinds, {"replace": [registry]})
    (replaced,) = [op for op in monitor.operations if op.operation == "replace" and op.type != "command:remote:Command"]
    assert replaced.urn == registry and replaced.detail == "--replace; nothing changed"
    assert ("create", registry) in kinds.other.calls

    # Only the targets are performed: the registry container is replaced (deleted first: its name is
    # unique), the unseal check (replaced on every up by design) is not targeted and left alone, and what
    # the program no longer registers is not deleted.
    kinds = Everything()
    _, monitor = _rehearse(state, kinds, {"targets": [registry], "replace": [registry]}, backups={"enabled": False})
    acted = [op for op in monitor.operations if op.operation != "same"]
    assert [(op.operation, op.urn) for op in acted] == [("replace", registry)]
    assert [verb for verb, _ in kinds.other.calls] == ["delete", "create"] and kinds.command.calls == []
    assert {op.detail for op in monitor.operations if op.operation == "same" and op.urn != registry} <= {"not targeted", ""}


def _resource(type_: str, **inputs: Any) -> Resource:
    return Resource(urn=f"urn:{type_}", type=type_, name="x", inputs=inputs)


def test_the_state_is_written_as_one_json_dump_of_it_after_any_change(tmp_path: Path) -> None:
    """Each save writes what ``json.dump`` of the whole state writes (byte for byte), though each
    entry is encoded once: after entries are added, replaced and removed."""
    state = State(tmp_path / "state.json")

    def whole() -> str:
        return json.dumps({"resources": {urn: asdict(saved) for urn, saved in state.resources.items()}}, sort_keys=True)

    state.save()
    assert state.path.read_text() == whole() == '{"resources": {}}'
    for index in (3, 1, 2, 0):
        state.resources[f"urn:b{index}"] = Saved("t", f"id{index}", {"z": [index, None], "a": {"y": "é\n\"x\""}}, {"o": True}, "db1")
        state.save()
        assert state.path.read_text() == whole()
    state.resources["urn:b1"] = Saved("t", "id1", {"changed": 1}, {}, "db2", protect=True)
    state.resources.pop("urn:b2")
    state.resources["urn:a#replaced"] = state.resources["urn:b3"]
    state.save()
    assert state.path.read_text() == whole()
    assert State.load(state.path).resources == state.resources


def test_random_password_honours_its_classes_and_hashes_with_bcrypt() -> None:
    import bcrypt

    _, out = RandomPassword().create(_resource("random", length=40, special=True, overrideSpecial="-_.", minSpecial=3, minUpper=2))
    password = out["result"]
    assert len(password) == 40 and sum(c in "-_." for c in password) >= 3 and sum(c.isupper() for c in password) >= 2
    assert set(password) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert bcrypt.checkpw(password.encode(), out["bcryptHash"].encode())
    _, plain = RandomPassword().create(_resource("random", length=32, special=False))
    assert plain["result"].isalnum() and plain["result"] != password
    _, raw = RandomBytes().create(_resource("random", length=32))
    assert len(bytes.fromhex(raw["hex"])) == 32


def test_tls_kinds_make_a_chain_that_verifies() -> None:
    _, ca_key = PrivateKey().create(_resource("tls", algorithm="ECDSA", ecdsaCurve="P256"))
    _, ca = SelfSignedCert().create(_resource("tls", privateKeyPem=ca_key["privateKeyPem"], isCaCertificate=True,
                                              allowedUses=["cert_signing"], subject={"commonName": "CA"}, validityPeriodHours=10))
    _, key = PrivateKey().create(_resource("tls", algorithm="ECDSA", ecdsaCurve="P256"))
    _, request = CertRequest().create(_resource("tls", privateKeyPem=key["privateKeyPem"], subject={"commonName": "vault"},
                                                dnsNames=["vault"], ipAddresses=["10.0.0.1"]))
    _, leaf = LocallySignedCert().create(_resource("tls", certRequestPem=request["certRequestPem"], caCertPem=ca["certPem"],
                                                   caPrivateKeyPem=ca_key["privateKeyPem"], validityPeriodHours=5,
                                                   allowedUses=["server_auth", "digital_signature"]))
    authority = x509.load_pem_x509_certificate(ca["certPem"].encode())
    certificate = x509.load_pem_x509_certificate(leaf["certPem"].encode())
    certificate.verify_directly_issued_by(authority)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["vault"]
    assert isinstance(authority.public_key(), ec.EllipticCurvePublicKey)


def test_every_type_the_program_registers_has_a_kind(stack_run: ProgramRun) -> None:
    """A resource type without a kind fails the rehearsal part-way (``no rehearsal of <type>``): caught here."""
    table = kinds({**docker_kinds({}), **vault_kinds(), **minio_kinds()})
    registered = {r.type for r in stack_run.registrations if r.custom and not r.type.startswith("pulumi:providers:")}
    assert registered - set(table) == set()


def test_the_report_lists_each_stand_in_and_each_service_the_lab_leaves_out() -> None:
    urn = "urn:pulumi:lab::samarth-infra::samarth:backups:Backups$minio:index/iamUser:IamUser::backups-db1-user"
    operations = [Operation(urn.replace("db1", server), "minio:index/iamUser:IamUser", "10.0.0.1", "create", STAND_IN, detail="no admin API")
                  for server in ("db2", "db1")]
    report = Rehearsal(ProgramRun("lab", [], {}), operations, 0.0, 1.0, {"sentry": "needs Compose 2.32"}).report()
    assert "create backups-db1-user, backups-db2-user (minio:index/iamUser:IamUser): stand-in; no admin API" in report
    assert "not executed: sentry, disabled on the lab stack: needs Compose 2.32" in report


class FailsOn(Recorder):
    """A recorder whose create of one URN fails, as a step failing on a server fails `pulumi up`."""

    def __init__(self, failing: str, real: Kind | None = None) -> None:
        super().__init__(real)
        self.failing = failing

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        if resource.urn == self.failing:
            raise RehearsalError(f"{resource.urn}: failed on purpose")
        return super().create(resource)


def test_a_failed_run_resumes_from_its_state_without_repeating_finished_steps(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    registry = next(r for r in program_run("staging").registrations if r.name == "registry-container")
    failing = registry.urn
    broken = Everything()
    broken.other = FailsOn(failing)
    monitor = RehearsalMonitor(State.load(state), broken)
    run = run_program("staging", monitor=monitor)
    message = str(run.error)
    assert "failed on purpose" in message
    finished = {urn for verb, urn in broken.command.calls + broken.other.calls if verb == "create"}
    saved = set(json.loads(state.read_text())["resources"])
    assert finished
    assert failing not in finished
    assert finished <= saved

    # The next run performs what did not happen, and repeats nothing that did (but the unseal check,
    # replaced on every up by design).
    again = Everything()
    _, second = _rehearse(state, again)
    created = {urn for verb, urn in again.command.calls + again.other.calls if verb == "create"}
    assert failing in created
    repeated = [op for op in second.operations if op.urn in finished and op.operation != "same"]
    reasons = {op.detail for op in repeated}
    assert reasons <= {EVERY_UP["vault-unseal"], "replaced"}, reasons
