"""Samarth: six servers, from one validated stack config."""

import pulumi

from components.deployment import engine_deployment
from components.platform.firewall import component as firewall
from components.platform.host.component import build_hosts
from components.services.backups import component as backups
from components.services.databases import component as data
from components.services.edge import component as edge
from components.services.observability import component as observability
from components.services.registry import component as registry
from components.services.storage import component as storage
from components.services.swarm.component import Cluster, ClusterArgs, RegistryLogin
from components.services.vault import component as vault
from components.shared.publishing import CredentialBook

# Validation first: a bad stack file stops here, before any resource is registered.
deployment = engine_deployment()
config, key, vault_init = deployment.config, deployment.ssh_private_key, deployment.vault_init

hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None, config.logs)
book = CredentialBook()
databases = data.build_databases(config, hosts, book)

vault_server = vault.VaultServer(
    "vault",
    vault.VaultServerArgs(
        host=hosts[vault.SERVER],
        settings=config.vault,
        image=config.versions.vault,
        server_name=config.vault_server_name,
        imported_init=pulumi.Output.secret(vault_init) if vault_init else None,
    ),
)

minio = storage.Storage(
    "minio", storage.StorageArgs(host=hosts[storage.SERVER], image=config.versions.minio, book=book)
)
docker_registry = registry.Registry(
    "registry",
    registry.RegistryArgs(
        host=hosts[registry.SERVER],
        image=config.versions.registry,
        public_host=config.edge.registry_host,
        book=book,
    ),
)
apps = observability.Observability(
    "observability", observability.ObservabilityArgs(host=hosts[observability.SERVER], config=config, book=book)
)
nginx = edge.EdgeProxy(
    "nginx",
    edge.EdgeArgs(
        host=hosts[edge.SERVER],
        config=config,
        upstreams=deployment.upstreams,
        upstream_hosts=hosts,
        ca_certificates={"vault": vault_server.ca_certificate} if vault_server.ca_certificate is not None else {},
    ),
)
swarm = Cluster(
    "swarm",
    ClusterArgs(
        settings=config.swarm,
        manager=hosts["swarm-master"],
        workers={name: hosts[name] for name in config.swarm.workers},
        registry=RegistryLogin(
            server=docker_registry.server,
            username=docker_registry.username,
            password=docker_registry.password,
            # A login goes to the registry's public name: Nginx must serve it, the registry must answer.
            ready=[docker_registry.container, nginx.serving],
        ),
    ),
)
backup_agents = backups.Backups(
    "backups",
    backups.BackupsArgs(
        config=config,
        hosts=hosts,
        sources=deployment.backup_sources,
        store=backups.ObjectStore(provider=minio.provider, endpoint=minio.endpoint),
        vault=backups.VaultAccess(
            provider=vault_server.provider, ready=vault_server.unseal, approle_path=vault_server.approle.path
        ),
        book=book,
        offsite_secret_access_key=(
            pulumi.Output.secret(deployment.offsite_secret_access_key) if deployment.offsite_secret_access_key else None
        ),
    ),
)

# Last: every component has added its credentials to the book by now.
vault_server.publish(book)

# Every component's listeners and their legitimate clients, as host firewall rules on each server.
host_firewall = firewall.Firewall(
    "firewall",
    firewall.FirewallArgs(
        hosts=hosts,
        config=config,
        openings=[
            *(opening for host in hosts.values() for opening in host.openings),
            *(opening for server in databases.values() for opening in server.openings),
            *vault_server.openings,
            *minio.openings,
            *docker_registry.openings,
            *apps.openings,
            *nginx.openings,
            *swarm.openings,
            *backup_agents.openings,
        ],
    ),
)

pulumi.export("privateIps", {name: host.private_ip for name, host in hosts.items()})
pulumi.export("serverFacts", {name: host.facts for name, host in hosts.items()})
# Where each service's databases listen (no credentials: those are in Vault, kv/samarth/<service>).
pulumi.export("databases", {service: ends for server in databases.values() for service, ends in server.endpoints.items()})
pulumi.export("vaultAddress", vault_server.address)
if vault_server.ca_certificate is not None:
    # What Jenkins (and anyone else) verifies Vault's certificate with: VAULT_CACERT.
    pulumi.export("vaultCaCertificate", vault_server.ca_certificate)
pulumi.export("jenkinsRoleId", vault_server.jenkins_role_id)
pulumi.export("jenkinsSecretId", vault_server.jenkins_secret_id)
pulumi.export("registry", {"server": docker_registry.server, "username": docker_registry.username})
pulumi.export("minioEndpoint", minio.endpoint)
pulumi.export("edgeRoutes", [f"{r.host}{r.path} -> {r.upstream}{f':{r.port}' if r.port else ''}" for _, r in config.edge_routes()])
# Where each server's backups go (credentials: Vault, kv/samarth/backups).
pulumi.export("backupRepositories", backup_agents.repositories)
if backup_agents.offsite_keys:
    # To install on the off-site SFTP host, one authorized_keys line per server (docs/backups.md, "Off-site copy").
    pulumi.export("backupOffsiteKeys", backup_agents.offsite_keys)
pulumi.export("swarmManagerAddress", swarm.manager_address)
pulumi.export("swarmNetwork", swarm.network.name)
pulumi.export("firewall", [firewall.row_export(row) for row in host_firewall.rows])
