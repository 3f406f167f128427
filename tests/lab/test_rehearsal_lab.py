"""`pulumi up` rehearsed on fresh lab machines (lab/rehearsal.py): the lab stack (staging's settings on six
machines, the lab's own ACME CA) deployed for real, every registration performed in the order the SDK
resolves them, then a second run with nothing changed.

- The fresh deploy succeeds; every registration is executed, a listed stand-in (MinIO's admin API only), or
  has nothing to perform (components, provider configurations); every remote command ran.
- The second run performs nothing but what the program replaces on every `up` by design
  (``lab.rehearsal.EVERY_UP``), each with its reason.
- What the deploy made is there: each server's backups initialised their repository (db1's, db2's and
  swarm-master's in MinIO's bucket, through the stand-in's S3), Vault writes its audit log, Nginx serves the
  lab CA's certificates.
- A preview of the deployed stack lists only the unseal check; a targeted `--replace` of the registry's
  container replaces it alone, and its protected volume keeps what was written to it.
- The seed's request flow on what the rehearsal deployed (lab/request_flow.py): Jenkins' job reads its
  registry user from the program's Vault with the stack's AppRole, pushes through Nginx to the program's
  registry and deploys through swarm-master's deploy key, which does nothing else; a user on the public
  network is answered through Nginx.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from components.services.mirror.settings import PORT as MIRROR_PORT
from components.services.registry.component import STORAGE_PATH
from components.shared.model import DOCKER_HUB, image_registry
from lab import docker, ssh, unavailable
from lab.hub import hub_path
from lab.rehearsal import EVERY_UP, EXECUTED, NOTHING, STAND_IN, Rehearsal, RehearsalLab, fresh_lab
from lab.rehearsal_images import THROUGH_THE_MIRROR
from lab.rehearsal_minio import s3
from lab.request_flow import DeployedStack, curl, deploy, in_namespace, reachable
from lab.swarm import nodes
from tools.offline import COMMAND, IMAGE

STACK = "samarth"
SERVICE = "samarth/esamwad-web"

STAND_IN_TYPES = {"minio:index/iamPolicy:IamPolicy", "minio:index/iamUser:IamUser",
                  "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment"}


@pytest.fixture(scope="module")
def rehearsed() -> Iterator[tuple[RehearsalLab, Rehearsal, Rehearsal]]:
    if reason := unavailable():
        pytest.skip(reason)
    with fresh_lab("h") as lab:
        first = lab.rehearse()
        print(first.report())
        second = lab.rehearse() if first.failed() is None else first
        print(second.report())
        yield lab, first, second


def test_a_fresh_deploy_performs_every_registration(rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal]) -> None:
    _, first, _ = rehearsed
    assert first.failed() is None, first.report()
    outcomes = {(op.outcome, op.type) for op in first.operations}
    assert {outcome for outcome, _ in outcomes} <= {EXECUTED, STAND_IN, NOTHING}
    assert {type_ for outcome, type_ in outcomes if outcome == STAND_IN} == STAND_IN_TYPES
    commands = [r for r in first.run.registrations if r.type == COMMAND]
    executed = {op.urn for op in first.operations if op.type == COMMAND and op.outcome == EXECUTED and op.operation == "create"}
    assert len(commands) > 50 and {r.urn for r in commands} == executed
    assert {"sentry", "posthog"} <= set(first.not_executed)
    # Debian's sshd refuses unauthenticated connections past MaxStartups' first figure, 10: the remote
    # commands the engine runs at once on one server stay under it.
    assert set(first.sessions_at_once) == {host.address for host in rehearsed[0].lab.hosts() if host.name != "acme"}
    assert max(first.sessions_at_once.values()) <= 10, first.sessions_at_once


def test_every_docker_hub_image_but_the_mirrors_own_came_through_the_mirror(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    lab, first, _ = rehearsed
    assert first.failed() is None, first.report()
    images = {r.name: (str(r.inputs["name"]), str(r.outputs["served"])) for r in first.run.of_type(IMAGE)}
    hub_images = {name: how for name, (reference, how) in images.items() if image_registry(reference) == DOCKER_HUB}
    # The mirror's own image comes first, before any mirror answers (the bootstrap order): built on the machine.
    assert THROUGH_THE_MIRROR not in hub_images.pop("hub-mirror-image")
    assert hub_images and all(how.endswith(THROUGH_THE_MIRROR) for how in hub_images.values()), hub_images
    assert all(THROUGH_THE_MIRROR not in how for reference, how in images.values() if image_registry(reference) != DOCKER_HUB)
    # The mirror served each one's manifest (its access log), and holds the layers of those a machine did
    # not have yet (its catalog lists a repository once it stored a layer of it).
    application, db2 = lab.lab.host("application"), lab.lab.host("db2")
    log = docker(application, "logs", "hub-mirror")
    for name in hub_images:
        repository = hub_path(images[name][0]).rsplit(":", 1)[0]
        assert re.search(rf'"(GET|HEAD) /v2/{re.escape(repository)}/manifests/\S+ HTTP/1.1" 200', log.stdout + log.stderr), name
    catalog = subprocess.run(in_namespace(db2, ["curl", "-fsS", f"http://{application.address}:{MIRROR_PORT}/v2/_catalog"]),
                             capture_output=True, text=True, timeout=30)
    pulled_by_db2 = {hub_path(reference).rsplit(":", 1)[0] for r in first.run.of_type(IMAGE)
                     if (reference := str(r.inputs["name"])) and image_registry(reference) == DOCKER_HUB
                     and r.name.startswith(("db2-", "backups-db2-"))}
    assert pulled_by_db2 and pulled_by_db2 <= set(json.loads(catalog.stdout)["repositories"]), catalog.stdout


def test_a_second_run_replaces_only_what_the_program_replaces_on_every_up(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    _, first, second = rehearsed
    assert first.failed() is None and second.failed() is None, second.report()
    acted = [op for op in second.operations if op.operation != "same"]
    assert acted, "the unseal check runs on every up"
    for op in acted:
        assert op.type == COMMAND and op.operation in ("replace", "delete"), second.report()
        assert op.detail in (*EVERY_UP.values(), "replaced"), second.report()


def test_every_backup_repository_was_initialised_where_the_program_put_it(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    lab, first, _ = rehearsed
    assert first.failed() is None, first.report()
    application = lab.lab.host("application")
    listing = s3({"minioServer": f"{application.address}:9000", "minioUser": "any", "minioPassword": "any-key"}).list_objects_v2(
        Bucket="samarth-backups")
    configs = {item["Key"] for item in listing.get("Contents", []) if item["Key"].endswith("/config")}
    assert configs == {"db1/config", "db2/config", "swarm-master/config"}
    # The application server's repository is an SFTP account on db1.
    found = ssh(lab.lab.host("db1"), "sudo find /srv/samarth-backups -maxdepth 3 -name config")
    assert "application" in found.stdout, found.stdout + found.stderr


def test_vault_writes_its_audit_log_and_nginx_serves_the_lab_cas_certificates(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    lab, first, _ = rehearsed
    assert first.failed() is None, first.report()
    application = lab.lab.host("application")
    audit = ssh(application, "sudo docker exec vault sh -c 'wc -l </vault/logs/audit.log'")
    assert audit.returncode == 0 and int(audit.stdout) > 0, audit.stdout + audit.stderr
    for route in json.loads(lab.values["samarth-infra:edge"])["routes"]:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((application.address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=route["host"]) as tls:
            served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        assert "Pebble" in served.issuer.rfc4514_string(), (route["host"], served.issuer)
        assert route["host"] in str(served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def test_jenkins_deploys_on_the_rehearsed_stack_and_a_user_is_answered_through_nginx(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    lab, first, _ = rehearsed
    assert first.failed() is None, first.report()
    hosts = {host.name: host for host in lab.lab.hosts()}
    stack = DeployedStack(first.run, hosts, lab.work, lab.ca.issuer_roots)
    manager = hosts["swarm-master"]
    server = stack.output("registry")["server"]
    # Every member logged in to the registry through Nginx during the deploy, in its own Docker config.
    for name in ("swarm-master", "swarm-node2", "swarm-node3"):
        stored = json.loads((hosts[name].docker_config / "config.json").read_text())
        assert server in stored["auths"], name
    assert sorted(n for n, v in nodes(manager).items() if v["state"] == "ready") == ["swarm-master", "swarm-node2", "swarm-node3"]

    # Jenkins builds, reads the registry from Vault with the AppRole, logs in, pushes and deploys; the
    # user's request comes from the public network, by the route's host name.
    client = lab.lab.public_client("application")
    deployment = deploy(stack, client, STACK, SERVICE, "hello from the swarm\n")
    assert deployment.job.returncode == 0, deployment.job.stderr
    for secret in ("registry-password", "registry-jenkins-password"):
        password = next(str(r.outputs["result"]) for r in first.run.registrations if r.name == secret)
        assert password not in deployment.job.stdout + deployment.job.stderr
    assert deployment.answer == "hello from the swarm\n\n200", docker(manager, "service", "ps", "--no-trunc", f"{STACK}_web").stdout

    # Every node pulled the image from the program's registry with the credentials the deploy handed over.
    def running() -> list[str]:
        return docker(manager, "service", "ps", f"{STACK}_web", "--filter", "desired-state=running",
                      "--format", "{{.Node}} {{.CurrentState}} {{.Image}}").stdout.splitlines()

    deadline = time.monotonic() + 120
    while sorted(t.split()[0] for t in running() if " Running " in t) != ["swarm-master", "swarm-node2", "swarm-node3"]:
        assert time.monotonic() < deadline, docker(manager, "service", "ps", "--no-trunc", f"{STACK}_web").stdout
        time.sleep(0.5)
    assert all(f"{server}/{SERVICE}:1.0.0" in task for task in running())
    service = json.loads(docker(manager, "service", "inspect", f"{STACK}_web").stdout)[0]
    networks = {n["Target"] for n in service["Spec"]["TaskTemplate"].get("Networks", [])}
    network_id = docker(manager, "network", "inspect", "-f", "{{.Id}}", str(stack.output("swarmNetwork"))).stdout.strip()
    assert network_id in networks, "the stack joins the program's overlay network"

    # The deploy key did the deploy, and does nothing else: no other request, no shell, no forwarding, and
    # nothing from another address than Jenkins'.
    target = f"deploy@{manager.address}"
    for request in ("docker ps", f"docker stack rm {STACK}", f"deploy {STACK}; id", "id"):
        refused = stack.deploy_key_ssh(None, target, request, stdin="services: {}\n")
        assert refused.returncode != 0 and "refused" in refused.stderr and "uid=" not in refused.stdout, (request, refused)
    pty = stack.deploy_key_ssh(None, "-tt", target, stdin="id\n")
    assert pty.returncode != 0 and "uid=" not in pty.stdout, pty
    forwarding = stack.deploy_key_ssh(None, "-W", "127.0.0.1:22", target)
    assert forwarding.returncode != 0 and "SSH-2.0" not in forwarding.stdout, forwarding
    # From another machine the firewall drops the connection before sshd's `from=` would refuse the key.
    elsewhere = stack.deploy_key_ssh(hosts["swarm-node2"], "-o", "ConnectTimeout=5", target, f"deploy {STACK}",
                                     stdin=(lab.work / "stack.yml").read_text())
    assert elsewhere.returncode == 255 and "timed out" in elsewhere.stderr, elsewhere
    assert "docker" not in ssh(manager, "id -nG deploy\n", sudo=True).stdout.split()

    # A name no route serves: Nginx refuses the TLS handshake.
    unknown = curl(client, stack.public_roots, f"unknown.{deployment.route_host.split('.', 1)[1]}")
    assert unknown.returncode != 0 and "200" not in unknown.stdout

    # db2's databases (the program's containers) answer the swarm, never the public side.
    address = hosts["db2"].address
    ends = [end for kinds in stack.output("databases").values() for end in kinds.values()]
    port = next(int(end["port"]) for end in ends if end["host"] == address)
    assert reachable(in_namespace(manager, []), address, port)
    assert not reachable(["nsenter", f"--net=/var/run/netns/{client.namespace}"], address, port)


def test_a_preview_shows_only_the_unseal_and_a_targeted_replacement_keeps_the_registrys_volume(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    """Last: it replaces the registry's container."""
    lab, first, second = rehearsed
    assert first.failed() is None and second.failed() is None, second.report()
    preview = lab.rehearse(preview=True)
    assert preview.failed() is None, preview.report()
    assert [(op.operation, op.detail) for op in preview.operations if op.operation != "same"] == [
        ("replace", EVERY_UP["vault-unseal"])], preview.report()

    application = lab.lab.host("application")
    marker = f"kept across the replacement {time.time()}"
    written = docker(application, "exec", "registry", "sh", "-c", f"echo '{marker}' > {STORAGE_PATH}/samarth-marker")
    assert written.returncode == 0, written.stderr
    registry = first.run.named("docker:index/container:Container", "registry-container").urn
    replaced = lab.rehearse(targets=[registry], replace=[registry])
    assert replaced.failed() is None, replaced.report()
    assert [(op.operation, op.urn) for op in replaced.operations if op.operation != "same"] == [("replace", registry)]
    assert docker(application, "exec", "registry", "cat", f"{STORAGE_PATH}/samarth-marker").stdout.strip() == marker
    # Healthy again: the rehearsal waits for its healthcheck, as the provider does with `wait`.
    assert docker(application, "inspect", "-f", "{{.State.Health.Status}}", "registry").stdout.strip() == "healthy"


BUMP = {"redis": "redis:7.4.12"}


def test_a_version_bump_replaces_exactly_what_the_preview_listed_and_keeps_the_data(
    rehearsed: tuple[RehearsalLab, Rehearsal, Rehearsal],
) -> None:
    """Last of all: it moves the stack to another Redis pin (served as a second lab image of the same
    software), as a bump promoted from staging would."""
    lab, first, second = rehearsed
    assert first.failed() is None and second.failed() is None, second.report()
    machines = [lab.lab.host("db1"), lab.lab.host("db2")]
    redis = {(host.name, name) for host in machines
             for name in docker(host, "ps", "--format", "{{.Names}}", "--filter", "name=^redis-").stdout.split()}
    assert len(redis) >= 2, redis
    marker = f"kept across the bump {time.time()}"
    for host_name, name in redis:
        stored = docker(lab.lab.host(host_name), "exec", name, "redis-cli", "set", "samarth-bump", marker)
        assert stored.stdout.strip() == "OK", stored.stdout + stored.stderr

    def changes(rehearsal: Rehearsal) -> set[tuple[str, str]]:
        return {(op.operation, op.urn) for op in rehearsal.operations
                if op.operation != "same" and op.detail not in (EVERY_UP["vault-unseal"], "replaced")}

    preview = lab.rehearse(versions=BUMP, preview=True)
    assert preview.failed() is None, preview.report()
    bumped = lab.rehearse(versions=BUMP)
    assert bumped.failed() is None, bumped.report()
    assert changes(bumped) == changes(preview), (preview.report(), bumped.report())
    replaced_containers = {op.urn.rsplit("::", 1)[1] for op in bumped.operations
                           if op.operation == "replace" and op.type == "docker:index/container:Container"}
    assert len(replaced_containers) == len(redis) and all("redis" in urn for urn in replaced_containers), replaced_containers
    for op in bumped.operations:
        if op.operation == "replace" and op.type == "docker:index/container:Container":
            print(f"downtime of {op.urn.rsplit('::', 1)[1]}: {op.seconds:.1f} s (old container removed to new one healthy)")
    for host_name, name in redis:
        host = lab.lab.host(host_name)
        assert docker(host, "exec", name, "redis-cli", "get", "samarth-bump").stdout.strip() == marker, name
        assert docker(host, "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == "healthy", name
        assert BUMP["redis"] in docker(host, "inspect", "-f", "{{.Config.Labels}}", name).stdout, name
