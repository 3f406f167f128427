"""Samarth: six servers, from one validated stack config."""

import pulumi

from components import assembly
from components.deployment import engine_deployment
from components.platform.firewall import component as firewall
from components.platform.firewall.settings import client_sources
from components.platform.host.component import BuildInputs, build_hosts
from components.services.backups import component as backups
from components.services.databases.component import build_databases
from components.services.edge import component as edge
from components.services.edge.settings import SERVICE as NGINX
from components.services.edge.settings import issuer_roots
from components.services.mirror import component as mirror
from components.services.mirror.settings import SERVICE as MIRROR
from components.services.mirror.settings import mirror_url
from components.services.registry import component as registry
from components.services.registry.settings import SERVICE as REGISTRY
from components.services.registry.settings import public_host
from components.services.storage import component as storage
from components.services.storage.settings import SERVICE as MINIO
from components.services.swarm.component import Cluster, ClusterArgs, RegistryLogin
from components.services.vault import component as vault
from components.services.vault.settings import SERVICE as VAULT
from components.services.vault.settings import server_name as vault_server_name
from components.shared.model import SWARM_MANAGER
from components.shared.publishing import CredentialBook
from components.shared.service import application_paths

# Validation first: a bad stack file stops here, before any resource is registered.
deployment = engine_deployment()
config, key, vault_init = deployment.config, deployment.ssh_private_key, deployment.vault_init

# Every server's dockerd asks the Docker Hub mirror first (registry-mirrors); until the mirror answers, it
# falls back to Docker Hub, which is where the mirror's own image comes from.
mirrors = (url,) if (url := mirror_url(config)) else ()
hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None, config.logs, mirrors)
hub_mirror = None
if config.mirror.enabled:
    assert config.versions.mirror is not None  # config validation requires it with the mirror enabled
    hub_mirror = mirror.Mirror(
        "hub-mirror",
        mirror.MirrorArgs(
            host=hosts[MIRROR.server],
            image=config.versions.mirror,
            settings=config.mirror,
            hub_token=pulumi.Output.secret(deployment.docker_hub_token) if deployment.docker_hub_token else None,
        ),
    )
    # From here on, every Docker Hub pull on every server waits for the mirror, and goes through it.
    for host in hosts.values():
        host.pull_through(hub_mirror.container)
book = CredentialBook()
databases = build_databases(config.databases, config.versions.model_dump(), hosts, book)

vault_server = vault.VaultServer(
    "vault",
    vault.VaultServerArgs(
        host=hosts[VAULT.server],
        settings=config.vault,
        image=config.versions.vault,
        server_name=vault_server_name(config.vault, config.domain),
        imported_init=pulumi.Output.secret(vault_init) if vault_init else None,
        jenkins_paths=application_paths(deployment.declarations.values()),
    ),
)
minio = storage.Storage(
    "minio", storage.StorageArgs(host=hosts[MINIO.server], image=config.versions.minio, book=book)
)
registry_name = public_host(config.edge_routes())
docker_registry = registry.Registry(
    "registry",
    registry.RegistryArgs(
        host=hosts[REGISTRY.server],
        image=config.versions.registry,
        public_host=registry_name,
        book=book,
    ),
)
# The backing services nobody else consumes, each from its own settings.
backing = [module.build(BuildInputs(config, hosts, book)) for module in assembly.BACKING]
nginx = edge.EdgeProxy(
    "nginx",
    edge.EdgeArgs(
        host=hosts[NGINX.server],
        settings=config.edge,
        routes=config.edge_routes(),
        image=config.versions.nginx,
        acme_image=config.versions.lego,
        upstreams=deployment.upstreams,
        upstream_hosts=hosts,
        ca_certificates={"vault": vault_server.ca_certificate} if vault_server.ca_certificate is not None else {},
        # The swarm's registry logins wait for this name's certificate alone.
        waited_for=(registry_name,),
    ),
)
swarm = Cluster(
    "swarm",
    ClusterArgs(
        settings=config.swarm,
        manager=hosts[SWARM_MANAGER],
        workers={name: hosts[name] for name in config.swarm.workers},
        registry=RegistryLogin(
            server=docker_registry.server,
            username=docker_registry.username,
            password=docker_registry.password,
            # A login goes to the registry's public name: Nginx must serve it with its certificate (only
            # that one: a name whose DNS is not pointed yet does not hold the swarm back), the registry must answer.
            ready=[docker_registry.container, nginx.serving_name(registry_name)],
            trusted_roots=issuer_roots(config.edge.tls),
        ),
        jenkins_networks=config.firewall.jenkins or (),
    ),
)
backup_agents = backups.Backups(
    "backups",
    backups.BackupsArgs(
        settings=config.backups,
        hosts=hosts,
        sources=deployment.backup_sources,
        restic_image=config.versions.restic,
        rclone_image=config.versions.rclone,
        store=backups.ObjectStore(server=MINIO.server, provider=minio.provider, endpoint=minio.endpoint),
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

# What every service declares it listens on and who may reach it, as host firewall rules on each server.
host_firewall = firewall.Firewall(
    "firewall",
    firewall.FirewallArgs(
        hosts=hosts,
        settings=config.firewall,
        openings=deployment.openings,
        clients=client_sources(config, deployment.client_groups),
    ),
)

pulumi.export("privateIps", {name: host.private_ip for name, host in hosts.items()})
pulumi.export("serverFacts", {name: host.facts for name, host in hosts.items()})
built: list[assembly.Built] = [databases, vault_server, minio, docker_registry, *backing, nginx, swarm, backup_agents, host_firewall]
if hub_mirror is not None:
    built.append(hub_mirror)
for service in built:
    for name, value in service.exports.items():
        pulumi.export(name, value)
