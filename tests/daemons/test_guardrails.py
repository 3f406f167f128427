"""The policy pack in CI: every stack's real program through the pack's analyzer, weakened copies of it
caught, and capacity checked both from config (early) and from what was registered."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from components.assembly import stack_placements
from components.config import ConfigError
from policies import rules
from tools import guardrails
from tools.offline import ROOT, ProgramRun, Registration, is_secret, read_stack_values, reveal, run_program, stack_file

# Every stack file that exists, not a list to keep up to date.
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


@pytest.fixture(scope="module")
def analyzer() -> guardrails.Analyzer:
    return guardrails.Analyzer()


@pytest.fixture(scope="module")
def every_run(runs: dict[str, ProgramRun]) -> dict[str, ProgramRun]:
    result = {stack: runs.get(stack) or run_program(stack) for stack in STACKS}
    for stack, run in result.items():
        assert run.error is None, f"stack {stack} failed under mocks: {run.error}"
    return result


def test_stacks_found() -> None:
    assert {"prod", "staging"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_every_rule(stack: str, every_run: dict[str, ProgramRun], analyzer: guardrails.Analyzer) -> None:
    run = every_run[stack]
    assert [r for r in run.registrations if r.custom], "nothing registered"
    assert [str(v) for v in analyzer.check(run)] == []
    assert [r.name for r in run.registrations if policies_hit(analyzer, run, r)] == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_volume_is_protected_and_retained(stack: str, every_run: dict[str, ProgramRun]) -> None:
    """What a policy cannot see (retain_on_delete is not sent to analyzers), CI checks here."""
    volumes = every_run[stack].of_type(rules.VOLUME)
    assert [v.name for v in volumes if not (v.protect and v.retain_on_delete)] == []


# --- weakening the real program ------------------------------------------------------------------

def weakened(registration: Registration, change: Callable[[dict[str, Any]], None], **options: Any) -> Registration:
    inputs = copy.deepcopy(registration.inputs)
    change(inputs)
    return dataclasses.replace(registration, inputs=inputs, **options)


def policies_hit(analyzer: guardrails.Analyzer, run: ProgramRun, registration: Registration) -> set[str]:
    """The policies ``registration`` breaks, through the pack's analyzer; a direct call of each validator
    with ``guardrails.validation_args`` (what unit tests build) must find the same."""
    provider = run.provider_of(registration)
    found = analyzer.analyze(registration, provider)
    assert all(v.mandatory for v in found)
    args = guardrails.validation_args(registration, provider)
    assert args.opts.protect == registration.protect
    direct: set[str] = set()
    for name, (_, validate) in rules.RULES.items():
        validate(args, partial(_report_to, direct, name))
    assert direct == {v.policy for v in found}
    return direct


def database_containers(run: ProgramRun) -> list[Registration]:
    return [c for c in run.of_type(rules.CONTAINER) if rules.sensitive_kind(reveal(c.inputs))]


def a_postgres(run: ProgramRun) -> Registration:
    return next(c for c in database_containers(run) if rules.sensitive_kind(reveal(c.inputs)) == "postgres")


def test_a_database_port_on_0000_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    targets = [c for c in database_containers(prod) if c.inputs.get("ports")]
    assert targets, "the program publishes no database port to weaken"

    def on_wildcard(inputs: dict[str, Any]) -> None:
        inputs["ports"][0]["ip"] = "0.0.0.0"

    def on_default(inputs: dict[str, Any]) -> None:
        del inputs["ports"][0]["ip"]

    for container in targets:
        for change in (on_wildcard, on_default):
            hit = policies_hit(analyzer, prod, weakened(container, change))
            assert hit == {"no-public-container-ports", "sensitive-ports-private"}, container.name


def test_a_database_on_the_host_network_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    container = a_postgres(prod)
    hit = policies_hit(analyzer, prod, weakened(container, lambda inputs: inputs.update(networkMode="host", ports=[])))
    assert hit == {"sensitive-ports-private"}


def test_a_host_network_server_listening_on_every_address_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    targets = [c for c in prod.of_type(rules.CONTAINER) if c in database_containers(prod) and reveal(c.inputs).get("networkMode") == "host"]
    if not targets:
        pytest.skip("no server on the host network yet (the vault component brings one)")

    def listen_everywhere(inputs: dict[str, Any]) -> None:
        uploads = reveal(inputs["uploads"])
        for upload in uploads:
            upload["content"] = re.sub(r"\b(\d{1,3}\.){3}\d{1,3}:(\d+)", r"0.0.0.0:\2", upload["content"])
        inputs["uploads"] = uploads

    for container in targets:
        loose = weakened(container, listen_everywhere)
        assert "0.0.0.0" in json.dumps(reveal(loose.inputs["uploads"]))
        assert policies_hit(analyzer, prod, loose) == {"sensitive-ports-private"}, container.name


def test_an_unprotected_volume_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    volumes = prod.of_type(rules.VOLUME)
    assert volumes, "the program creates no volume to weaken"
    for volume in volumes:
        loose = weakened(volume, lambda inputs: None, protect=False, retain_on_delete=False)
        assert policies_hit(analyzer, prod, loose) == {"volumes-protected"}, volume.name


def _credential_names(value: Any, name: str = "") -> list[str]:
    """Credential names in a revealed value: keys and ``ENV=value`` entries."""
    if isinstance(value, dict):
        return [n for key, item in value.items() for n in _credential_names(item, key)]
    if isinstance(value, list):
        return [n for item in value for n in _credential_names(item, name)]
    entry = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", value) if isinstance(value, str) else None
    found = entry.group(1) if entry else name
    return [found] if isinstance(value, str) and value and rules.credential_name(found) else []


def _secret_credentials(value: Any, path: tuple[Any, ...] = (), name: str = "") -> Iterator[tuple[tuple[Any, ...], list[str]]]:
    """Paths of secrets whose content carries credentials, with the credentials' names."""
    if is_secret(value):
        names = _credential_names(reveal(value), name)
        if names:
            yield path, names
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_credentials(item, path + (key,), key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _secret_credentials(item, path + (i,), name)


def _report_to(found: set[str], rule: str, message: str, urn: Any = None) -> None:
    found.add(rule)


def _reveal_at(inputs: dict[str, Any], path: tuple[Any, ...]) -> None:
    holder: Any = inputs
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = reveal(holder[path[-1]])


def test_a_plaintext_password_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    """Every credential the program passes as a secret, passed in plaintext instead, is a violation."""
    revealed: list[str] = []
    for registration in prod.registrations:
        for path, names in _secret_credentials(registration.inputs):
            exposed = weakened(registration, partial(_reveal_at, path=path))
            assert policies_hit(analyzer, prod, exposed) == {"credentials-are-secrets"}, (registration.name, path)
            revealed.extend(names)
    # Every database container's credentials, and the SSH key of every command's connection.
    for expected in ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "REDISCLI_AUTH", "privateKey"):
        assert expected in revealed, revealed


def test_latest_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    images = prod.of_type(rules.REMOTE_IMAGE)
    assert images
    for image in images:
        moving = weakened(image, lambda inputs: inputs.update(name=inputs["name"].rsplit(":", 1)[0] + ":latest"))
        assert policies_hit(analyzer, prod, moving) == {"images-pinned"}, image.name
        untagged = weakened(image, lambda inputs: inputs.update(name=inputs["name"].rsplit(":", 1)[0]))
        assert policies_hit(analyzer, prod, untagged) == {"images-pinned"}, image.name


def test_anonymous_listing_or_a_public_acl_on_minio_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    policies, buckets = prod.of_type(rules.BUCKET_POLICY), prod.of_type(rules.BUCKET)
    if not policies and not buckets:
        pytest.skip("the program creates no MinIO bucket yet (the edge component brings it)")

    def list_anonymously(inputs: dict[str, Any]) -> None:
        document = json.loads(reveal(inputs["policy"]))
        document["Statement"].append({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket"],
                                      "Resource": [f"arn:aws:s3:::{reveal(inputs['bucket'])}"]})
        inputs["policy"] = json.dumps(document)

    for policy in policies:
        assert policies_hit(analyzer, prod, weakened(policy, list_anonymously)) == {"minio-anonymous-read-only"}
    for bucket in buckets:
        public = weakened(bucket, lambda inputs: inputs.update(acl="public-read"))
        assert policies_hit(analyzer, prod, public) == {"minio-anonymous-read-only"}


def test_latest_in_config_stops_the_program_before_any_resource() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    versions = json.loads(values["samarth-infra:versions"])
    run = run_program("prod", overrides={"versions": {**versions, "postgres": "postgres:latest"}})
    assert isinstance(run.error, ConfigError) and "versions.postgres" in str(run.error)
    assert run.registrations == []


# --- capacity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_container_memory_fits_each_server_as_planned(stack: str, every_run: dict[str, ProgramRun]) -> None:
    run, config = every_run[stack], guardrails.stack_config(stack)
    by_server = guardrails.container_memory(run)
    assert by_server and all(mib > 0 for containers in by_server.values() for mib in containers.values())
    assert guardrails.capacity_problems(run, config) == []
    # Where a container is named like its placement, its limit is the placement's number.
    planned = {(p.server, p.what): p.memory_mib for p in stack_placements(config)}
    matched = 0
    for server, containers in by_server.items():
        for container in run.of_type(rules.CONTAINER):
            if guardrails.server_of(run, container) != server:
                continue
            key = (server, reveal(container.inputs).get("name"))
            if key in planned:
                matched += 1
                assert containers[container.name] == planned[key], key
    assert matched


def test_registered_memory_beyond_a_server_is_caught(prod: ProgramRun) -> None:
    config = guardrails.stack_config("prod")
    server, _containers = max(guardrails.container_memory(prod).items(), key=lambda item: sum(item[1].values()))
    small = config.model_copy(update={"servers": {**config.servers, server: config.servers[server].model_copy(update={"memory_mib": 512})}})
    problems = guardrails.capacity_problems(prod, small)
    assert len(problems) == 1 and problems[0].startswith(f"{server}: containers take") and "only 460 MiB usable" in problems[0]


def test_an_overcommitted_stack_fails_early_with_the_table() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    servers = json.loads(values["samarth-infra:servers"])
    config = guardrails.stack_config("prod")
    placed: dict[str, int] = {}
    for p in stack_placements(config):
        placed[p.server] = placed.get(p.server, 0) + p.memory_mib
    server = max(placed, key=placed.__getitem__)
    servers[server]["memoryMib"] = 512
    run = run_program("prod", overrides={"servers": servers})
    assert isinstance(run.error, ConfigError)
    message = str(run.error)
    assert f"servers.{server}.memoryMib: 512 MiB" in message
    assert re.search(rf"^{re.escape(server)}\s+= total / usable of declared\s+{placed[server]} / 460 of 512$", message, re.M)
    assert run.registrations == []


# --- the pack as the CLI starts it ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pack_stub() -> Iterator[Any]:
    """``policies/__main__.py`` in its own process, as `pulumi preview --policy-pack` starts it: it
    prints the port of its analyzer gRPC server."""
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    process = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "policies" / "__main__.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.poll() is not None else port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_pack_process_serves_every_rule_as_mandatory(pack_stub: Any) -> None:
    from google.protobuf import empty_pb2
    from pulumi.runtime import proto

    info = pack_stub.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == guardrails.PACK
    assert {p.name: p.enforcementLevel for p in info.policies} == dict.fromkeys(rules.RULES, proto.MANDATORY)


def test_the_pack_process_tells_secret_from_plaintext(prod: ProgramRun, pack_stub: Any) -> None:
    container = a_postgres(prod)
    provider = prod.provider_of(container)
    clean = pack_stub.Analyze(guardrails.analyze_request(container, provider))
    assert list(clean.diagnostics) == []
    exposed = weakened(container, lambda inputs: inputs.update(envs=reveal(inputs["envs"])))
    found = pack_stub.Analyze(guardrails.analyze_request(exposed, provider))
    assert {d.policyName for d in found.diagnostics} == {"credentials-are-secrets"}
    assert all("=<literal> in plaintext" in d.message for d in found.diagnostics)


def test_the_command_line_reports_each_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert guardrails.main(["staging"]) == 0
    assert re.fullmatch(r"staging: \d+ resources, 0 violations\n", capsys.readouterr().out)


def test_an_acme_name_whose_challenge_port_80_does_not_serve_is_caught(prod: ProgramRun, analyzer: guardrails.Analyzer) -> None:
    reload = prod.named(rules.COMMAND, "nginx-reload")
    assert policies_hit(analyzer, prod, reload) == set()

    def without_challenges(inputs: dict[str, Any]) -> None:
        inputs["stdin"] = inputs["stdin"].replace("location /.well-known/acme-challenge/", "location /.well-known/other/")

    assert policies_hit(analyzer, prod, weakened(reload, without_challenges)) == {"tls-names-have-certificates"}
