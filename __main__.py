"""Samarth: six servers, from one validated stack config."""

import pulumi

from components import data, observability
from components.capacity import check_capacity
from components.config import engine_config, engine_secret_keys, load_stack_config, ssh_private_key
from components.host import build_hosts
from components.publishing import CredentialBook

# Validation first: a bad stack file stops here, before any resource is registered.
project = pulumi.get_project()
values = engine_config()
config = load_stack_config(project, values)
key = ssh_private_key(project, values, engine_secret_keys())
check_capacity(config, [*data.placements(config), *observability.placements(config)])

hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None)
book = CredentialBook()
databases = data.build_databases(config, hosts, book)
apps = observability.Observability(
    "observability", observability.ObservabilityArgs(host=hosts[observability.SERVER], config=config, book=book)
)

pulumi.export("privateIps", {name: host.private_ip for name, host in hosts.items()})
pulumi.export("serverFacts", {name: host.facts for name, host in hosts.items()})
# Where each service's databases listen (no credentials: those are in Vault, kv/samarth/<service>).
pulumi.export("databases", {service: ends for server in databases.values() for service, ends in server.endpoints.items()})
