"""Samarth: six servers, from one validated stack config."""

import pulumi

from components import data, observability, vault
from components.capacity import check_capacity
from components.config import engine_config, engine_secret_keys, imported_vault_init, load_stack_config, ssh_private_key
from components.host import build_hosts
from components.publishing import CredentialBook

# Validation first: a bad stack file stops here, before any resource is registered.
project = pulumi.get_project()
values = engine_config()
config = load_stack_config(project, values)
key = ssh_private_key(project, values, engine_secret_keys())
vault_init = imported_vault_init(project, values, engine_secret_keys())
check_capacity(config, [*data.placements(config), *vault.placements(config), *observability.placements(config)])

hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None)
book = CredentialBook()
databases = data.build_databases(config, hosts, book)

vault_server = vault.VaultServer(
    "vault",
    vault.VaultServerArgs(
        host=hosts[vault.SERVER],
        settings=config.vault,
        image=config.versions.vault,
        imported_init=pulumi.Output.secret(vault_init) if vault_init else None,
    ),
)

apps = observability.Observability(
    "observability", observability.ObservabilityArgs(host=hosts[observability.SERVER], config=config, book=book)
)

# Last: every component has added its credentials to the book by now.
vault_server.publish(book)

pulumi.export("privateIps", {name: host.private_ip for name, host in hosts.items()})
pulumi.export("serverFacts", {name: host.facts for name, host in hosts.items()})
# Where each service's databases listen (no credentials: those are in Vault, kv/samarth/<service>).
pulumi.export("databases", {service: ends for server in databases.values() for service, ends in server.endpoints.items()})
pulumi.export("vaultAddress", vault_server.address)
pulumi.export("jenkinsRoleId", vault_server.jenkins_role_id)
pulumi.export("jenkinsSecretId", vault_server.jenkins_secret_id)
