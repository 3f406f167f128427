"""The swarm under mocks: who initialises, who joins what with which token, the network, the logins."""

from __future__ import annotations

import json

import pytest

from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools.offline import ProgramRun, Registration, is_secret, plaintext_strings, reveal, secret_strings

COMMAND = "command:remote:Command"
WORKERS = ("swarm-node2", "swarm-node3")


def _servers(run: ProgramRun) -> dict:
    from tools.offline import read_stack_values, stack_file

    values, _ = read_stack_values(stack_file(run.stack))
    return json.loads(values["samarth-infra:servers"])


def _host(run: ProgramRun, name: str) -> Registration:
    return run.named("samarth:host:Host", name)


def _tokens(run: ProgramRun) -> dict:
    init = run.named(COMMAND, "swarm-master-swarm-init")
    return json.loads(reveal(init.outputs["stdout"]))


def test_init_runs_on_the_master_and_advertises_its_private_ip(stack_run: ProgramRun) -> None:
    master_ip = _servers(stack_run)["swarm-master"]["privateIp"]
    init = stack_run.named(COMMAND, "swarm-master-swarm-init")
    assert reveal(init.inputs["connection"])["host"] == master_ip
    create = init.inputs["create"]
    assert 'docker swarm init --advertise-addr "$MASTER_IP" --listen-addr "$MANAGER_ADDRESS"' in create
    assert script_values(create)["MASTER_IP"] == master_ip
    assert script_values(create)["MANAGER_ADDRESS"] == f"{master_ip}:2377"
    # Only when not already a manager: the init sits in the "inactive" branch of the state check.
    assert create.index("docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'") < create.index(
        '"inactive false")'
    ) < create.index("docker swarm init")
    # The tokens are printed on stdout, so stdout must be secret and never logged.
    assert "stdout" in init.additional_secret_outputs
    assert init.inputs["logging"] == "none"
    assert is_secret(init.outputs["stdout"])
    cluster = stack_run.named("samarth:swarm:Cluster", "swarm")
    assert all(r.parent == cluster.urn for r in stack_run.under(cluster))


def test_both_workers_join_the_masters_address_with_the_secret_worker_token(stack_run: ProgramRun) -> None:
    servers = _servers(stack_run)
    master_ip = servers["swarm-master"]["privateIp"]
    init = stack_run.named(COMMAND, "swarm-master-swarm-init")
    token = _tokens(stack_run)["workerToken"]
    for worker in WORKERS:
        join = stack_run.named(COMMAND, f"{worker}-swarm-join")
        assert reveal(join.inputs["connection"])["host"] == servers[worker]["privateIp"]
        create = join.inputs["create"]
        # Through the Engine API with the token on curl's stdin: never in a process's argv.
        assert '"JoinToken":"%s"}\' \\\n    "$WORKER_IP" "$MANAGER_ADDRESS" "$token"' in create
        assert "--data-binary @-" in create and "http://docker/swarm/join" in create
        assert "docker swarm join" not in create.replace("# What `docker swarm join` sends", "")
        values = script_values(create)
        assert (values["WORKER_IP"], values["MANAGER_ADDRESS"]) == (servers[worker]["privateIp"], f"{master_ip}:2377")
        assert is_secret(join.inputs["stdin"])
        assert reveal(join.inputs["stdin"]) == f"{token}\n"
        assert join.inputs["logging"] == "none"
        assert init.urn in join.dependencies
        assert "docker swarm leave" in join.inputs["delete"]


def test_worker_removal_runs_drain_then_leave_then_remove(prod: ProgramRun) -> None:
    """Pulumi deletes dependents first: node (drain) -> join (leave) -> seat (node rm)."""
    for worker in WORKERS:
        seat = prod.named(COMMAND, f"{worker}-swarm-seat")
        join = prod.named(COMMAND, f"{worker}-swarm-join")
        node = prod.named(COMMAND, f"{worker}-swarm-node")
        assert join.urn in node.dependencies and seat.urn in join.dependencies
        master = reveal(prod.named(COMMAND, "swarm-master-swarm-init").inputs["connection"])
        assert reveal(seat.inputs["connection"]) == master == reveal(node.inputs["connection"])
        assert "--availability drain" in node.inputs["delete"]
        assert 'docker node rm --force "$id"' in seat.inputs["delete"]


def test_a_worker_taken_out_of_config_gets_no_swarm_resources() -> None:
    run = program_run("prod", overrides={"swarm": {"workers": ["swarm-node2"]}})
    assert run.error is None
    names = {r.name for r in run.of_type(COMMAND)}
    assert {"swarm-node2-swarm-join", "swarm-node2-swarm-node", "swarm-node2-swarm-seat"} <= names
    assert not [n for n in names if n.startswith("swarm-node3-swarm") or n.startswith("swarm-node3-registry")]


def test_labels_carry_role_declared_memory_and_config_labels(prod: ProgramRun) -> None:
    servers = _servers(prod)
    for name, role in (("swarm-master", "manager"), ("swarm-node2", "worker"), ("swarm-node3", "worker")):
        labels = script_values(prod.named(COMMAND, f"{name}-swarm-node").inputs["create"])["LABELS"].splitlines()
        assert f"role={role}" in labels
        assert f"memory_mib={servers[name]['memoryMib']}" in labels
    assert "zone=a" in script_values(prod.named(COMMAND, "swarm-node2-swarm-node").inputs["create"])["LABELS"].splitlines()


def test_overlay_network_is_attachable_and_created_through_the_masters_provider(stack_run: ProgramRun) -> None:
    (network,) = stack_run.of_type("docker:index/network:Network")
    assert network.inputs["name"] == "application_default"
    assert network.inputs["driver"] == "overlay"
    assert network.inputs["attachable"] is True
    assert network.inputs["options"] == {"encrypted": "true"}
    provider = stack_run.provider_of(network)
    assert provider is not None and provider.parent == _host(stack_run, "swarm-master").urn
    assert stack_run.named(COMMAND, "swarm-master-swarm-init").urn in network.dependencies
    assert stack_run.exports["swarmNetwork"] == "application_default"
    assert stack_run.exports["swarmManagerAddress"] == f"{_servers(stack_run)['swarm-master']['privateIp']}:2377"


def test_overlay_encryption_can_be_turned_off() -> None:
    run = program_run("prod", overrides={"swarm": {"encryptOverlay": False}})
    (network,) = run.of_type("docker:index/network:Network")
    assert not network.inputs.get("options")


def test_no_join_token_appears_in_plaintext_anywhere(stack_run: ProgramRun) -> None:
    tokens = _tokens(stack_run)
    for registration in stack_run.registrations:
        for text in plaintext_strings(registration.inputs):
            assert tokens["workerToken"] not in text and tokens["managerToken"] not in text, registration.name
    assert any(tokens["workerToken"] in s for s in secret_strings(stack_run.named(COMMAND, "swarm-node2-swarm-join").inputs))


@pytest.mark.parametrize(
    ("swarm", "message"),
    [
        ({"labels": {"db1": {"zone": "a"}}}, "swarm.labels.db1: db1 is not a member of the swarm"),
        ({"workers": ["swarm-node2"], "labels": {"swarm-node3": {"zone": "a"}}}, "swarm.labels.swarm-node3: swarm-node3 is not a member"),
        ({"labels": {"swarm-node2": {"role": "db"}}}, "swarm.labels.swarm-node2.role: role is set by the program"),
        ({"labels": {"swarm-node2": {"zone": "a b"}}}, "swarm.labels.swarm-node2.zone: String should match pattern"),
        ({"workers": ["db1"]}, "swarm.workers[0]: Input should be 'swarm-node2' or 'swarm-node3'"),
        ({"workers": ["swarm-node2", "swarm-node2"]}, "swarm.workers: swarm-node2, swarm-node2 names a worker twice"),
        ({"encryptOverlay": "maybe"}, "swarm.encryptOverlay: Input should be a valid boolean"),
        ({"manager": "swarm-node2"}, "swarm.manager: unknown key"),
    ],
)
def test_bad_swarm_config_fails_before_any_resource(swarm: dict, message: str) -> None:
    run = program_run("prod", overrides={"swarm": swarm})
    assert run.error is not None and message in str(run.error)
    assert run.registrations == []


def test_every_swarm_node_logs_in_to_the_registry_with_the_password_on_stdin(stack_run: ProgramRun) -> None:
    registry = stack_run.named("samarth:registry:Registry", "registry")
    server = stack_run.exports["registry"]["server"]
    username = stack_run.exports["registry"]["username"]
    (password,) = [
        reveal(r.outputs["result"])
        for r in stack_run.under(registry)
        if r.type == "random:index/randomPassword:RandomPassword" and r.name == "registry-password"
    ]
    servers = _servers(stack_run)
    for node in ("swarm-master", *WORKERS):
        login = stack_run.named(COMMAND, f"{node}-registry-login")
        assert reveal(login.inputs["connection"])["host"] == servers[node]["privateIp"]
        assert 'docker login --username "$REGISTRY_USER" --password-stdin "$REGISTRY"' in login.inputs["create"]
        assert script_values(login.inputs["create"])["REGISTRY"] == server
        assert script_values(login.inputs["create"])["REGISTRY_USER"] == username
        assert is_secret(login.inputs["stdin"]) and reveal(login.inputs["stdin"]) == f"{password}\n"
        assert login.inputs["logging"] == "none"
    for registration in stack_run.registrations:
        assert not any(password in text for text in plaintext_strings(registration.inputs)), registration.name


def test_registry_login_can_be_turned_off() -> None:
    run = program_run("prod", overrides={"swarm": {"registryLogin": False}})
    assert run.error is None
    assert not [r for r in run.of_type(COMMAND) if r.name.endswith("-registry-login")]


@pytest.mark.parametrize(
    ("swarm", "message"),
    [
        ({"addressPool": "8.8.0.0/16"}, "swarm.addressPool: 8.8.0.0/16 is not a private network"),
        ({"addressPool": "10.20.0.0/16"}, "swarm.addressPool: 10.20.0.0/16 holds servers."),
        ({"addressPool": "10.0.0.0/8"}, "choose a pool apart from the servers' network"),
        ({"addressPool": "172.16.0.0/12"}, "swarm.addressPool: 172.16.0.0/12 overlaps firewall.dockerBridge 172.17.0.0/16"),
        ({"addressPool": "10.200.0.1/16"}, "swarm.addressPool: '10.200.0.1/16' is not a network in CIDR form"),
        ({"addressPool": "banana"}, "swarm.addressPool: 'banana' is not a network in CIDR form"),
        ({"addressPool": "fd00::/48"}, "swarm.addressPool: fd00::/48 is an IPv6 network"),
        ({"addressPoolMaskLength": 12}, "swarm.addressPoolMaskLength: 12 is wider than the pool 10.200.0.0/16"),
        ({"addressPoolMaskLength": 31}, "swarm.addressPoolMaskLength: Input should be less than or equal to 29"),
    ],
)
def test_bad_address_pool_fails_before_any_resource(swarm: dict, message: str) -> None:
    run = program_run("prod", overrides={"swarm": swarm})
    assert run.error is not None and message in str(run.error), run.error
    assert run.registrations == []


def test_init_passes_the_configured_address_pool() -> None:
    run = program_run("prod", overrides={"swarm": {"addressPool": "192.168.64.0/20", "addressPoolMaskLength": 26}})
    assert run.error is None, run.error
    create = run.named(COMMAND, "swarm-master-swarm-init").inputs["create"]
    assert '--default-addr-pool "$ADDRESS_POOL" --default-addr-pool-mask-length "$POOL_MASK_LENGTH"' in create
    assert script_values(create)["ADDRESS_POOL"] == "192.168.64.0/20"
    assert script_values(create)["POOL_MASK_LENGTH"] == "26"


def test_default_address_pool_is_apart_from_every_committed_stacks_servers(stack_run: ProgramRun) -> None:
    import ipaddress

    create = stack_run.named(COMMAND, "swarm-master-swarm-init").inputs["create"]
    pool = ipaddress.ip_network(script_values(create)["ADDRESS_POOL"])
    assert pool != ipaddress.ip_network("10.0.0.0/8")
    for server in _servers(stack_run).values():
        assert ipaddress.ip_address(server["privateIp"]) not in pool
