"""Samarth: six servers, from one validated stack config."""

import pulumi

from components.capacity import check_capacity
from components.config import engine_config, engine_secret_keys, load_stack_config, ssh_private_key
from components.host import build_hosts
from components.swarm import Cluster, ClusterArgs

# Validation first: a bad stack file stops here, before any resource is registered.
project = pulumi.get_project()
values = engine_config()
config = load_stack_config(project, values)
key = ssh_private_key(project, values, engine_secret_keys())
check_capacity(config, [])

hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None)

swarm = Cluster(
    "swarm",
    ClusterArgs(
        settings=config.swarm,
        manager=hosts["swarm-master"],
        workers={name: hosts[name] for name in config.swarm.workers},
    ),
)

pulumi.export("privateIps", {name: host.private_ip for name, host in hosts.items()})
pulumi.export("serverFacts", {name: host.facts for name, host in hosts.items()})
pulumi.export("swarmManagerAddress", swarm.manager_address)
pulumi.export("swarmNetwork", swarm.network.name)
