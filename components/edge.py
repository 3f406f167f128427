"""Nginx on the application server: the only container with public ports (80, 443).

Its configuration is rendered from ``edge.routes`` in stack config. Each route names an upstream:
a service on the application server (reached on the server's private IP) or ``swarm`` (swarm-master's
private IP and the port the swarm publishes). A change uploads the new file, checks it with
``nginx -t`` inside the running container and reloads; a config that fails the check is rolled back
and Nginx keeps serving the previous one.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random

from . import acme
from .capacity import Placement
from .config import Route, ServerName, StackConfig
from .containers import Healthcheck, pinned_image, service_container
from .host import Host
from .ports import MINIO_API_PORT, NGINX_HTTP_PORT, NGINX_HTTPS_PORT, REGISTRY_PORT, Opening
from .shell import render

SERVER: ServerName = "application"
CONTAINER = "nginx"
MEMORY_MIB = 256
HEALTH_PORT = 8081
CONF_DIR = "/etc/nginx/conf.d"
CONF_FILE = "samarth.conf"
# The CA Nginx verifies Vault's certificate with, uploaded into the container.
VAULT_CA_FILE = "/etc/nginx/samarth/vault-ca.pem"


@dataclass(frozen=True)
class Upstream:
    # None for the swarm: each route names the port the swarm publishes.
    port: Optional[int]
    # Extra directives for every location that proxies to this upstream.
    directives: tuple[str, ...] = ()
    scheme: str = "http"


def application_upstreams(config: StackConfig) -> dict[str, Upstream]:
    """The application-server services a route can name, on the ports their components bind (Sentry and
    PostHog only when the stack installs them)."""
    observability = config.observability
    upstreams = {
        # Image layers are large and streamed: no size limit, no buffering, long reads.
        "registry": Upstream(
            REGISTRY_PORT,
            (
                "client_max_body_size 0;",
                "proxy_request_buffering off;",
                "proxy_buffering off;",
                "proxy_read_timeout 900s;",
                "proxy_send_timeout 900s;",
            ),
        ),
        # Public downloads only: the S3 API behind it serves anonymous GetObject, nothing that writes.
        "minio": Upstream(MINIO_API_PORT, ("limit_except GET { deny all; }", "proxy_buffering off;")),
        # Vault's TLS is kept on the private hop too, and its certificate verified against its CA and name.
        "vault": Upstream(config.vault.port, _vault_tls_directives(config), scheme=config.vault.scheme),
    }
    installed = observability.enabled()
    if "sentry" in installed:
        upstreams["sentry"] = Upstream(observability.sentry.port, ("client_max_body_size 100m;",))
    if "posthog" in installed:
        upstreams["posthog"] = Upstream(observability.posthog.port, ("client_max_body_size 20m;",))
    return upstreams


def _vault_tls_directives(config: StackConfig) -> tuple[str, ...]:
    if config.vault.plain_http:
        return ()
    return (
        f"proxy_ssl_trusted_certificate {VAULT_CA_FILE};",
        "proxy_ssl_verify on;",
        "proxy_ssl_verify_depth 2;",
        f"proxy_ssl_name {config.vault_server_name};",
        "proxy_ssl_server_name on;",
    )


def placements(config: StackConfig) -> list[Placement]:
    return [Placement(SERVER, "nginx", MEMORY_MIB)]


PROXY_HEADERS = (
    "proxy_http_version 1.1;",
    "proxy_set_header Host $host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Host $host;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $connection_upgrade;",
)


def _location(route: Route, address: str, upstream: Upstream) -> list[str]:
    lines = [f"    location {route.path} {{"]
    if route.allow:
        lines += [f"        allow {network};" for network in route.allow]
        lines.append("        deny all;")
    lines.append(f"        proxy_pass {upstream.scheme}://{address}:{upstream.port or route.port};")
    lines += [f"        {directive}" for directive in (*PROXY_HEADERS, *upstream.directives)]
    lines.append("    }")
    return lines


def certificate_files(config: StackConfig, host: str) -> tuple[str, str]:
    """The certificate and key Nginx serves for ``host``, as paths inside the Nginx container."""
    files = config.edge.tls.operator_files(host)
    if files is not None:
        return files.certificate_path, files.key_path
    live = posixpath.join(acme.NGINX_LIVE_DIR, host)
    return f"{live}.crt", f"{live}.key"


def render_config(config: StackConfig, application_ip: str, swarm_ip: str) -> str:
    """The Nginx ``conf.d`` file (inside ``http {}``): one TLS server per host name, a location per route,
    and on port 80 the ACME HTTP-01 challenges of the names the program gets certificates for."""
    upstreams = {**application_upstreams(config), "swarm": Upstream(None, ("client_max_body_size 50m;",))}
    by_host: dict[str, list[Route]] = defaultdict(list)
    for _, route in config.edge_routes():
        by_host[route.host].append(route)

    lines = [
        "# Rendered by samarth-infra (components/edge.py) from stack config `edge`. Edits here are overwritten.",
        "map $http_upgrade $connection_upgrade {",
        "    default upgrade;",
        "    ''      close;",
        "}",
        "",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:samarth_tls:10m;",
        "ssl_session_timeout 1d;",
        "",
        "# Container healthcheck; not published.",
        "server {",
        f"    listen 127.0.0.1:{HEALTH_PORT};",
        "    access_log off;",
        "    location = /healthz { return 200 \"ok\\n\"; }",
        "}",
        "",
        "server {",
        "    listen 80 default_server;",
        "    server_name _;",
        "    location / { return 301 https://$host$request_uri; }",
        "}",
        "",
    ]
    acme_hosts = config.acme_hosts()
    if acme_hosts:
        lines += [
            "# ACME HTTP-01: the CA fetches its tokens here, whatever a route's allow list says on 443;",
            "# everything else on port 80 is redirected.",
            "server {",
            "    listen 80;",
            f"    server_name {' '.join(acme_hosts)};",
            f"    location {acme.CHALLENGE_PATH} {{",
            f"        root {acme.NGINX_WEBROOT};",
            "        default_type text/plain;",
            "        try_files $uri =404;",
            "    }",
            "    location / { return 301 https://$host$request_uri; }",
            "}",
            "",
        ]
    lines += [
        "# Names that no route serves are refused during the TLS handshake.",
        "server {",
        "    listen 443 ssl default_server;",
        "    server_name _;",
        "    ssl_reject_handshake on;",
        "}",
    ]
    for host, routes in sorted(by_host.items()):
        certificate, key = certificate_files(config, host)
        lines += [
            "",
            "server {",
            "    listen 443 ssl;",
            f"    server_name {host};",
            f"    ssl_certificate {certificate};",
            f"    ssl_certificate_key {key};",
            '    add_header Strict-Transport-Security "max-age=31536000" always;',
        ]
        for route in sorted(routes, key=lambda r: r.path):
            address = swarm_ip if route.upstream == "swarm" else application_ip
            lines += _location(route, address, upstreams[route.upstream])
        lines.append("}")
    return "\n".join(lines) + "\n"


def reload_script(container: str, live_dir: str) -> str:
    """Install the config read from stdin, check it inside the running container, reload; on a failed
    check put the previous file back so a restart still finds a valid config."""
    return render(
        "nginx-reload.sh",
        "nginx-reload",
        CONTAINER=container,
        LIVE_DIR=live_dir,
        LIVE=posixpath.join(live_dir, CONF_FILE),
    )


@dataclass(frozen=True)
class EdgeArgs:
    host: Host
    swarm_master: Host
    config: StackConfig
    # The CA that issued Vault's certificate (VaultServer.ca_certificate); None when Vault is plain HTTP.
    vault_ca_certificate: Optional[pulumi.Input[str]] = None


class EdgeProxy(pulumi.ComponentResource):
    """Nginx, TLS termination and routing for every public name."""

    config_text: pulumi.Output[str]
    # Once this has run, Nginx serves the current config (every route, with its certificate).
    serving: command.remote.Command

    def __init__(self, name: str, args: EdgeArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:edge:Nginx", name, None, opts)
        host = args.host
        edge = args.config.edge
        if (args.vault_ca_certificate is None) != args.config.vault.plain_http:
            raise ValueError("EdgeArgs.vault_ca_certificate is required exactly when Vault serves TLS")
        # On the server, beside the team's existing files in the SSH user's home.
        live_dir = f"/home/{host.spec.ssh_user}/samarth/nginx/conf.d"

        self.config_text = pulumi.Output.all(host.private_ip, args.swarm_master.private_ip).apply(
            lambda ips: render_config(args.config, ips[0], ips[1])
        )

        # Created by the SSH user before Docker would create the mount source as root.
        directory = command.remote.Command(
            f"{name}-directory",
            connection=host.connection,
            create=render("nginx-directory.sh", "nginx-directory", LIVE_DIR=live_dir),
            opts=host.command_options(self),
        )
        image = pinned_image(host, self, f"{name}-image", args.config.versions.nginx)
        operator_files = [edge.tls.operator_files(h) for h in sorted({r.host for _, r in args.config.edge_routes()})]
        tls_dirs = sorted({posixpath.dirname(p) for f in operator_files if f for p in (f.certificate_path, f.key_path)})
        before_container: list[pulumi.Resource] = [directory]
        acme_mounts: list[docker.ContainerVolumeArgs] = []
        certificates_install = None
        if args.config.acme_hosts():
            # Kept in state as a secret: a rebuilt server registers with the same ACME account.
            account_key = random.RandomBytes(
                f"{name}-acme-account-key", length=acme.ACCOUNT_KEY_BYTES, opts=pulumi.ResourceOptions(parent=self)
            )
            install = acme.install_script(args.config, nginx_container=CONTAINER)
            install_digest = hashlib.sha256(install.encode()).hexdigest()
            account_pem: pulumi.Output[str] = pulumi.Output.secret(account_key.base64.apply(acme.account_key_pem))
            certificates_install = command.remote.Command(
                f"{name}-certificates-install",
                connection=host.connection,
                create=install,
                stdin=account_pem,
                # Its stdin is the account key: the previous output is never handed back (issue 13).
                add_previous_output_in_env=False,
                opts=host.command_options(self),
            )
            command.remote.Command(
                f"{name}-certificates-timer",
                connection=host.connection,
                create=acme.timer_script(),
                opts=host.command_options(self, depends_on=[certificates_install]),
            )
            before_container.append(certificates_install)
            # Adding these two mounts replaces the Nginx container once (docs/certificates.md).
            acme_mounts = [
                docker.ContainerVolumeArgs(
                    host_path=posixpath.join(acme.ACME_DIR, "live"), container_path=acme.NGINX_LIVE_DIR, read_only=True
                ),
                docker.ContainerVolumeArgs(
                    host_path=posixpath.join(acme.ACME_DIR, "webroot"), container_path=acme.NGINX_WEBROOT, read_only=True
                ),
            ]
        container = service_container(
            host,
            self,
            f"{name}-container",
            name=CONTAINER,
            image=image,
            memory_mib=MEMORY_MIB,
            healthcheck=Healthcheck(
                tests=["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{HEALTH_PORT}/healthz"],
                start_period="10s",
            ),
            # The only public binds of the deployment.
            ports=[
                docker.ContainerPortArgs(internal=port, external=port, ip="0.0.0.0")
                for port in (NGINX_HTTP_PORT, NGINX_HTTPS_PORT)
            ],
            depends_on=before_container,
            volumes=[
                docker.ContainerVolumeArgs(host_path=live_dir, container_path=CONF_DIR, read_only=True),
                *(docker.ContainerVolumeArgs(host_path=d, container_path=d, read_only=True) for d in tls_dirs),
                *acme_mounts,
            ],
            uploads=[docker.ContainerUploadArgs(file=VAULT_CA_FILE, content=args.vault_ca_certificate)]
            if args.vault_ca_certificate is not None
            else None,
        )
        digest = self.config_text.apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
        reload = command.remote.Command(
            f"{name}-reload",
            connection=host.connection,
            create=reload_script(CONTAINER, live_dir),
            stdin=self.config_text,
            # A new config, or a new container (whose mount is still empty on a fresh server), reloads.
            triggers=[digest, container.id],
            opts=host.command_options(self, depends_on=[container]),
        )
        self.serving = reload
        if certificates_install is not None:
            # After Nginx serves the challenges of every name: obtains what is missing or due, and
            # reloads Nginx (checked) when a certificate changed. Runs again on a new config (a name
            # added), a new install (new client, CA or names) or a new container.
            self.serving = command.remote.Command(
                f"{name}-certificates-renew",
                connection=host.connection,
                create=acme.run_script("renew"),
                triggers=[digest, container.id, install_digest],
                opts=host.command_options(self, depends_on=[reload, certificates_install]),
            )
        # What the swarm publishes for the routes (on every member: routing mesh) is for Nginx, whose
        # container's traffic leaves the application server from its private IP.
        swarm_ports = sorted({r.port for _, r in args.config.edge_routes() if r.upstream == "swarm" and r.port})
        self.openings = [
            Opening(member, "swarm route (Nginx upstream)", port, "tcp", True, (SERVER,))
            for member in args.config.swarm.members
            for port in swarm_ports
        ]
        self.register_outputs({"configSha256": digest})
