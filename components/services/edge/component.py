"""Nginx on the application server: the only container with public ports (80, 443).

Its configuration is rendered from ``edge.routes`` in stack config. Each route names an upstream,
one of those the other components offer (``Upstream``: the registry, MinIO, Vault, Sentry, PostHog,
the swarm), handed over by ``__main__.py``; Nginx proxies to the private IP of the upstream's server.
A change uploads the new file, checks it with ``nginx -t`` inside the running container and reloads;
a config that fails the check is rolled back and Nginx keeps serving the previous one.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, pinned_image, service_container
from components.shared.model import ServerName, server_name
from components.shared.service import Route, Upstream
from components.shared.shell import render

# acme is Nginx's own certificate helper, not a component (docs/structure.md).
from . import acme
from .settings import HTTP_PORT, HTTPS_PORT, MEMORY_MIB, Edge, EdgeTls, acme_hosts

CONTAINER = "nginx"
HEALTH_PORT = 8081
CONF_DIR = "/etc/nginx/conf.d"
CONF_FILE = "samarth.conf"
# Where the CA of each TLS upstream is uploaded into the container (ca_file).
CA_DIR = "/etc/nginx/samarth"


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


def ca_file(upstream: str) -> str:
    """The CA Nginx verifies a TLS upstream's certificate with, inside the container."""
    return posixpath.join(CA_DIR, f"{upstream}-ca.pem")


def _tls_directives(upstream: Upstream) -> tuple[str, ...]:
    if upstream.tls_server_name is None:
        return ()
    return (
        f"proxy_ssl_trusted_certificate {ca_file(upstream.name)};",
        "proxy_ssl_verify on;",
        "proxy_ssl_verify_depth 2;",
        f"proxy_ssl_name {upstream.tls_server_name};",
        "proxy_ssl_server_name on;",
    )


def _location(route: Route, address: str, upstream: Upstream) -> list[str]:
    lines = [f"    location {route.path} {{"]
    if route.allow:
        lines += [f"        allow {network};" for network in route.allow]
        lines.append("        deny all;")
    lines.append(f"        proxy_pass {upstream.scheme}://{address}:{upstream.port or route.port};")
    lines += [f"        {directive}" for directive in (*PROXY_HEADERS, *upstream.directives, *_tls_directives(upstream))]
    lines.append("    }")
    return lines


def certificate_files(tls: EdgeTls, host: str) -> tuple[str, str]:
    """The certificate and key Nginx serves for ``host``, as paths inside the Nginx container."""
    files = tls.operator_files(host)
    if files is not None:
        return files.certificate_path, files.key_path
    live = posixpath.join(acme.NGINX_LIVE_DIR, host)
    return f"{live}.crt", f"{live}.key"


def render_config(
    tls: EdgeTls, routes: Sequence[tuple[str, Route]], upstreams: Sequence[Upstream], addresses: Mapping[str, str]
) -> str:
    """The Nginx ``conf.d`` file (inside ``http {}``): one TLS server per host name, a location per route
    to its upstream at ``addresses[upstream.server]`` (private IPs), and on port 80 the ACME HTTP-01
    challenges of the names the program gets certificates for."""
    by_name = {upstream.name: upstream for upstream in upstreams}
    by_host: dict[str, list[Route]] = defaultdict(list)
    for _, route in routes:
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
    acme_names = acme_hosts(tls, routes)
    if acme_names:
        lines += [
            "# ACME HTTP-01: the CA fetches its tokens here, whatever a route's allow list says on 443;",
            "# everything else on port 80 is redirected.",
            "server {",
            "    listen 80;",
            f"    server_name {' '.join(acme_names)};",
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
    for host, host_routes in sorted(by_host.items()):
        certificate, key = certificate_files(tls, host)
        lines += [
            "",
            "server {",
            "    listen 443 ssl;",
            f"    server_name {host};",
            f"    ssl_certificate {certificate};",
            f"    ssl_certificate_key {key};",
            '    add_header Strict-Transport-Security "max-age=31536000" always;',
        ]
        for route in sorted(host_routes, key=lambda r: r.path):
            upstream = by_name[route.upstream]
            lines += _location(route, addresses[upstream.server], upstream)
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
    settings: Edge
    # Every route Nginx serves, with its config key: ``edge.routes`` and those other sections add
    # (``StackConfig.edge_routes``).
    routes: Sequence[tuple[str, Route]]
    # versions.nginx, and versions.lego for the ACME client.
    image: str
    acme_image: str
    # What the routes may name (what every service declares: ``Deployment.upstreams``).
    upstreams: Sequence[Upstream]
    # The servers, by name, whose private IPs the upstreams are reached on.
    upstream_hosts: Mapping[ServerName, Host]
    # The CA of each TLS upstream (``Upstream.tls_server_name``), by upstream name: Vault's.
    ca_certificates: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Names other components wait for (``serving_name``): each gets its certificate in a step of its own,
    # so a name that cannot be issued yet (its DNS not pointed) holds back only what waits for it.
    waited_for: Sequence[str] = ()


class EdgeProxy(pulumi.ComponentResource):
    """Nginx, TLS termination and routing for every public name."""

    config_text: pulumi.Output[str]
    # Once this has run, Nginx serves the current config (every route, with its certificate).
    serving: command.remote.Command
    # Per name of ``EdgeArgs.waited_for``: once this has run, Nginx serves that name with its certificate.
    serving_names: dict[str, command.remote.Command]

    def __init__(self, name: str, args: EdgeArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:edge:Nginx", name, None, opts)
        host, tls, routes = args.host, args.settings.tls, args.routes
        tls_upstreams = sorted(u.name for u in args.upstreams if u.tls_server_name is not None)
        if sorted(args.ca_certificates) != tls_upstreams:
            raise ValueError(f"EdgeArgs.ca_certificates: one CA for each TLS upstream ({', '.join(tls_upstreams)}) is required")
        # On the server, beside the team's existing files in the SSH user's home.
        live_dir = f"/home/{host.spec.ssh_user}/samarth/nginx/conf.d"

        servers = sorted({upstream.server for upstream in args.upstreams})
        addresses = {server: args.upstream_hosts[server_name(server)].private_ip for server in servers}
        self.config_text = pulumi.Output.all(**addresses).apply(
            lambda addresses: render_config(tls, routes, args.upstreams, addresses)
        )

        # Created by the SSH user before Docker would create the mount source as root.
        directory = command.remote.Command(
            f"{name}-directory",
            connection=host.connection,
            create=render("nginx-directory.sh", "nginx-directory", LIVE_DIR=live_dir),
            opts=host.command_options(self),
        )
        image = pinned_image(host, self, f"{name}-image", args.image)
        operator_files = [tls.operator_files(h) for h in sorted({r.host for _, r in routes})]
        tls_dirs = sorted({posixpath.dirname(p) for f in operator_files if f for p in (f.certificate_path, f.key_path)})
        before_container: list[pulumi.Resource] = [directory]
        acme_mounts: list[docker.ContainerVolumeArgs] = []
        certificates_install = None
        if tls.acme is not None and acme_hosts(tls, routes):
            client = acme.AcmeClient(tls.acme, tuple(acme_hosts(tls, routes)), args.acme_image)
            # Kept in state as a secret: a rebuilt server registers with the same ACME account.
            account_key = random.RandomBytes(
                f"{name}-acme-account-key", length=acme.ACCOUNT_KEY_BYTES, opts=pulumi.ResourceOptions(parent=self)
            )
            install = acme.install_script(client, nginx_container=CONTAINER)
            install_digest = hashlib.sha256(install.encode()).hexdigest()
            account_pem: pulumi.Output[str] = pulumi.Output.secret(account_key.base64.apply(acme.account_key_pem))
            certificates_install = command.remote.Command(
                f"{name}-certificates-install",
                connection=host.connection,
                create=install,
                stdin=account_pem,
                # Its stdin is the account key: the previous output is never handed back.
                add_previous_output_in_env=False,
                # Its first run pulls the ACME client's image (`docker run`): through the mirror.
                opts=host.command_options(self, depends_on=host.pull_waits_for(args.acme_image)),
            )
            command.remote.Command(
                f"{name}-certificates-timer",
                connection=host.connection,
                create=acme.timer_script(tls.acme),
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
                for port in (HTTP_PORT, HTTPS_PORT)
            ],
            depends_on=before_container,
            volumes=[
                docker.ContainerVolumeArgs(host_path=live_dir, container_path=CONF_DIR, read_only=True),
                *(docker.ContainerVolumeArgs(host_path=d, container_path=d, read_only=True) for d in tls_dirs),
                *acme_mounts,
            ],
            uploads=[
                docker.ContainerUploadArgs(file=ca_file(upstream), content=certificate)
                for upstream, certificate in sorted(args.ca_certificates.items())
            ]
            or None,
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
        self.serving_names = {}
        if certificates_install is not None:
            # After Nginx serves the challenges of every name: obtains what is missing or due, and
            # reloads Nginx (checked) when a certificate changed. Runs again on a new config (a name
            # added), a new install (new client, CA or names) or a new container. The names others
            # wait for first, each alone; then every name.
            for waited in sorted(set(args.waited_for) & set(acme_hosts(tls, routes))):
                self.serving_names[waited] = command.remote.Command(
                    f"{name}-certificate-{waited}",
                    connection=host.connection,
                    create=acme.run_script("renew", [waited]),
                    triggers=[digest, container.id, install_digest],
                    opts=host.command_options(self, depends_on=[reload, certificates_install]),
                )
            self.serving = command.remote.Command(
                f"{name}-certificates-renew",
                connection=host.connection,
                create=acme.run_script("renew"),
                triggers=[digest, container.id, install_digest],
                opts=host.command_options(self, depends_on=[reload, certificates_install, *self.serving_names.values()]),
            )
        self.exports = {"edgeRoutes": [f"{r.host}{r.path} -> {r.upstream}{f':{r.port}' if r.port else ''}" for _, r in routes]}
        self.register_outputs({"configSha256": digest})

    def serving_name(self, host: str) -> command.remote.Command:
        """What to wait for before a client reaches ``host`` over HTTPS: its own certificate step when
        ``host`` is one of ``EdgeArgs.waited_for`` and issued over ACME, else Nginx serving everything."""
        return self.serving_names.get(host, self.serving)
