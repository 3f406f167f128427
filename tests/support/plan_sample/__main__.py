"""A small program in the shape of the real one, for tools.plan's tests: one container on db2 behind a
generated password published in Vault, a swarm service using it, Nginx routing to the service through
a config file, and an installer component that runs only a remote command."""

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random
import pulumi_vault as vault

from components.deployment import engine_deployment
from components.platform.host.component import build_hosts

deployment = engine_deployment()
config, key = deployment.config, deployment.ssh_private_key
hosts = build_hosts(config.servers, config.access, pulumi.Output.secret(key) if key else None)
db2, master, application = hosts["db2"], hosts["swarm-master"], hosts["application"]


class Database(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("samarth:data:DatabaseServer", name, None)
        self.password = random.RandomPassword(f"{name}-yaus-postgres", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
        self.unpublished = random.RandomPassword(f"{name}-internal", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
        image = docker.RemoteImage(f"{name}-postgres-image", name=config.versions.postgres, keep_locally=True, opts=db2.docker_options(self))
        data = docker.Volume(f"{name}-postgres-yaus-data", name="postgres-yaus-data", opts=db2.docker_options(self, protect=True, retain_on_delete=True))
        scratch = docker.Volume(f"{name}-scratch", name="scratch", opts=db2.docker_options(self))
        docker.Container(
            f"{name}-postgres-yaus",
            name="postgres-yaus",
            image=image.image_id,
            restart="unless-stopped",
            network_mode="bridge",
            memory=512,
            envs=[pulumi.Output.secret(pulumi.Output.concat("POSTGRES_PASSWORD=", self.password.result))],
            ports=[docker.ContainerPortArgs(internal=5432, external=5432, ip=db2.private_ip)],
            volumes=[
                docker.ContainerVolumeArgs(volume_name=data.name, container_path="/var/lib/postgresql/data"),
                docker.ContainerVolumeArgs(volume_name=scratch.name, container_path="/scratch"),
            ],
            opts=db2.docker_options(self, delete_before_replace=True),
        )
        command.remote.Command(f"{name}-sysctl", connection=db2.connection, create="true", opts=db2.command_options(self))
        self.url = pulumi.Output.secret(pulumi.Output.concat("postgresql://yaus:", self.password.result, "@", db2.private_ip, ":5432/yaus"))
        self.register_outputs({})


class Swarm(pulumi.ComponentResource):
    def __init__(self, name: str, database: Database) -> None:
        super().__init__("samarth:swarm:Swarm", name, None)
        spec = config.servers["swarm-master"]
        manager = docker.Provider(f"{name}-manager", host=f"ssh://{spec.ssh_user}@{spec.private_ip}:{spec.ssh_port}", opts=pulumi.ResourceOptions(parent=self))
        docker.ServiceConfig(f"{name}-yaus-config", name="yaus-config", data="eWF1cw==", opts=pulumi.ResourceOptions(parent=self, provider=manager))
        docker.Network(f"{name}-application-default", name="application_default", driver="overlay", attachable=True, opts=master.docker_options(self))
        docker.Service(
            f"{name}-yaus",
            name="samarth_yaus",
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(image="10.20.0.10:5000/yaus:1.2.3", env={"DATABASE_URL": database.url})
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(ports=[docker.ServiceEndpointSpecPortArgs(target_port=3333, published_port=3333)]),
            opts=master.docker_options(self),
        )
        self.register_outputs({})


class Edge(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("samarth:edge:Nginx", name, None)
        route = (
            f"location / {{ proxy_pass http://{config.servers['swarm-master'].private_ip}:3333; }}\n"
            f"location /sentry/ {{ proxy_pass http://{config.servers['application'].private_ip}:9000; }}\n"
            f"location /vault/ {{ proxy_pass http://{config.servers['application'].private_ip}:8200; }}\n"
        )
        command.remote.CopyToRemote(
            f"{name}-conf", connection=application.connection, source=pulumi.StringAsset(route), remote_path="/etc/nginx/conf.d/yaus.conf", opts=application.command_options(self)
        )
        docker.Container(
            f"{name}-nginx",
            name="nginx",
            image="nginx:1.27.3",
            restart="unless-stopped",
            network_mode="bridge",
            memory=256,
            ports=[docker.ContainerPortArgs(internal=80, external=80, ip="0.0.0.0"), docker.ContainerPortArgs(internal=443, external=443, ip="0.0.0.0")],
            opts=application.docker_options(self),
        )
        self.register_outputs({})


class HostNetworked(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("samarth:vault:VaultServer", name, None)
        ip = config.servers["application"].private_ip
        docker.Container(
            f"{name}-server",
            name="vault",
            image="hashicorp/vault:1.20.4",
            restart="unless-stopped",
            network_mode="host",
            memory=1024,
            uploads=[docker.ContainerUploadArgs(file="/vault/config/samarth.hcl", content=f'listener "tcp" {{ address = "{ip}:8200" }}\nlistener "tcp" {{ address = "127.0.0.1:8200" }}\n')],
            opts=application.docker_options(self),
        )
        self.register_outputs({})


class Cluster(pulumi.ComponentResource):
    """Spans servers: a command on the manager and one on a worker."""

    def __init__(self, name: str) -> None:
        super().__init__("samarth:swarm:Cluster", name, None)
        manager = config.servers["swarm-master"].private_ip
        command.remote.Command(f"{name}-init", connection=master.connection, create=f"docker swarm init --advertise-addr {manager}:2377", opts=master.command_options(self))
        worker = hosts["swarm-node2"]
        command.remote.Command(f"{name}-join", connection=worker.connection, create=f"docker swarm join {manager}:2377", opts=worker.command_options(self))
        self.register_outputs({})


class Installer(pulumi.ComponentResource):
    def __init__(self, name: str, database: Database) -> None:
        super().__init__("samarth:observability:Sentry", name, None)
        command.remote.Command(
            f"{name}-install",
            connection=application.connection,
            create=pulumi.Output.concat("SENTRY_BIND=", application.private_ip, ":9000 SENTRY_DB=", database.url, " ./install.sh"),
            logging="none",
            opts=application.command_options(self),
        )
        self.register_outputs({})


database = Database("db2")
Swarm("swarm", database)
Edge("edge")
Installer("sentry", database)
HostNetworked("vault")
Cluster("cluster")
mount = vault.Mount("kv", path="kv", type="kv", options={"version": "2"})
vault.kv.SecretV2(
    "vault-yaus", mount=mount.path, name="samarth/yaus", data_json=pulumi.Output.json_dumps({"DATABASE_URL": database.url, "RMQ_QUEUE": "yaus"})
)
