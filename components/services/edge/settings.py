"""Nginx's settings (``edge``: its certificates and the routes of the stack file) and what it declares: the
public ports 80 and 443, its memory; the rules every route is checked by against the upstreams the
services offer. No Pulumi here."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from components.shared.model import AbsolutePath, AcmeDirectoryUrl, CalendarEvent, Email, HostName, Model, TimeSpan
from components.shared.service import Declaration, Listener, Placement, Pull, Route, Service, Upstream

if TYPE_CHECKING:
    from components.config import StackConfig

HTTP_PORT = 80
HTTPS_PORT = 443
MEMORY_MIB = 256
# The roots Let's Encrypt's staging environment issues under, which no Docker daemon trusts (docs/upstreams.md).
LETSENCRYPT_STAGING_ROOTS = Path(__file__).with_name("letsencrypt-staging-roots.pem")
# Where a relative ``edge.tls.issuerRoots`` is read from: the project's directory, where Pulumi runs it.
PROJECT_DIR = Path(__file__).resolve().parents[3]
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\n([A-Za-z0-9+/=\n]+?)\n?-----END \1-----")


def trust_bundle_problems(text: str) -> list[str]:
    """What keeps ``text`` from being a bundle of PEM certificates: no certificate, a block that is not a
    certificate (a private key, above all), a certificate whose base64 does not decode."""
    blocks = _PEM_BLOCK.findall(text)
    problems = [f"holds a {kind} block: only CERTIFICATE blocks belong in a trust bundle" for kind, _ in blocks if kind != "CERTIFICATE"]
    for kind, body in blocks:
        try:
            base64.b64decode(body.replace("\n", ""), validate=True)
        except binascii.Error:
            problems.append(f"a {kind} block is not valid base64")
    if not any(kind == "CERTIFICATE" for kind, _ in blocks):
        problems.append("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return problems


def _trust_bundle(value: str) -> str:
    try:
        text = (PROJECT_DIR / value).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{value}: cannot be read on the machine running Pulumi ({getattr(error, 'strerror', None) or error})") from None
    problems = trust_bundle_problems(text)
    if problems:
        raise ValueError(f"{value}: {'; '.join(problems)}")
    return value


# A file of PEM certificates on the machine running Pulumi, relative to the project's directory or absolute.
TrustBundle = Annotated[str, AfterValidator(_trust_bundle)]


LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
# The default, so that no stack but the one that sets production explicitly can hit Let's Encrypt's rate limits.
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Twice a day, as certbot does.
DEFAULT_RENEWAL_SCHEDULE = "*-*-* 04,16:00:00"


class Acme(Model):
    """The ACME CA the program gets certificates from (components/services/edge/acme.py)."""

    directory_url: AcmeDirectoryUrl = Field(default=LETSENCRYPT_STAGING, alias="directoryUrl")
    # Let's Encrypt writes to it before certificates expire and about changes to its terms.
    email: Email
    # PEM bundle on the application server the client trusts for the directory's own TLS (a private
    # ACME CA); by default the client image's trust store (Let's Encrypt's directory needs nothing).
    ca_certificate: Optional[AbsolutePath] = Field(default=None, alias="caCertificate")
    # When the renewal timer runs, and how far past that systemd may put each run off at random, so
    # that servers do not all call the CA at the same moment.
    renewal_schedule: CalendarEvent = Field(default=DEFAULT_RENEWAL_SCHEDULE, alias="renewalSchedule")
    renewal_random_delay: TimeSpan = Field(default="1h", alias="renewalRandomDelay")


class CertificateFiles(Model):
    """A certificate and key placed by the operator on the application server (PEM), mounted read-only into Nginx."""

    certificate_path: AbsolutePath = Field(alias="certificatePath")
    key_path: AbsolutePath = Field(alias="keyPath")


class EdgeTls(Model):
    """Where Nginx's certificates come from.

    ``mode: acme`` (the default): the program obtains and renews one certificate per route host name
    over HTTP-01; a name listed under ``files`` (one without public DNS, say) uses the operator's files
    instead. ``mode: files``: one ``certificatePath``/``keyPath`` pair (placed and renewed by the
    operator) serves every name.
    """

    mode: Literal["acme", "files"] = "acme"
    acme: Optional[Acme] = None
    files: dict[HostName, CertificateFiles] = Field(default_factory=dict)
    certificate_path: Optional[AbsolutePath] = Field(default=None, alias="certificatePath")
    key_path: Optional[AbsolutePath] = Field(default=None, alias="keyPath")
    # The roots the served certificates chain to when a Docker daemon does not trust them (a private CA):
    # the swarm's registry logins trust them for the registry's name. Let's Encrypt's staging roots are
    # known (``issuer_roots``); its production roots are in every trust store.
    issuer_roots: Optional[TrustBundle] = Field(default=None, alias="issuerRoots")

    def operator_files(self, host: str) -> Optional[CertificateFiles]:
        """The operator's certificate for ``host``, or ``None`` when the program obtains it over ACME."""
        if self.mode == "files":
            assert self.certificate_path is not None and self.key_path is not None
            return CertificateFiles(certificatePath=self.certificate_path, keyPath=self.key_path)
        return self.files.get(host)




def issuer_roots(tls: EdgeTls) -> Optional[str]:
    """The PEM roots a Docker daemon must trust for the names Nginx serves: ``issuerRoots``' file, else
    Let's Encrypt staging's roots when that is the ACME directory; None when the system's trust store
    is enough."""
    if tls.issuer_roots is not None:
        return (PROJECT_DIR / tls.issuer_roots).read_text()
    if tls.mode == "acme" and tls.acme is not None and tls.acme.directory_url == LETSENCRYPT_STAGING:
        return LETSENCRYPT_STAGING_ROOTS.read_text()
    return None


class Edge(Model):
    tls: EdgeTls
    routes: list[Route] = Field(min_length=1)


def acme_hosts(tls: EdgeTls, routes: Sequence[tuple[str, Route]]) -> list[str]:
    """The names the program gets certificates for over ACME: every routed host name not served from
    operator files, sorted."""
    if tls.mode != "acme":
        return []
    return sorted({route.host for _, route in routes} - set(tls.files))


def route_problems(
    routes: Sequence[tuple[str, Route]], upstreams: Sequence[Upstream], absent: Mapping[str, str]
) -> list[str]:
    """Every route (with its config key) that names no offered upstream or breaks the rules of the one it
    names (``Upstream.rules``), and every upstream named by another number of routes than its rules
    allow; ``absent``: upstreams a service knows but does not offer in this stack, with why."""
    offered = {upstream.name: upstream for upstream in upstreams}
    route_ports = [name for name, upstream in offered.items() if upstream.rules.port_from_route]
    problems: list[str] = []
    for key, route in routes:
        upstream = offered.get(route.upstream)
        if upstream is None:
            if route.upstream in absent:
                problems.append(f"{key}.upstream: {route.upstream!r} is not installed ({absent[route.upstream]})")
            else:
                problems.append(f"{key}.upstream: unknown upstream {route.upstream!r} (expected one of {', '.join(offered)})")
            continue
        rules = upstream.rules
        if rules.port_from_route and route.port is None:
            problems.append(f"{key}: port is required for upstream {route.upstream!r} ({rules.port_from_route})")
        if not rules.port_from_route and route.port is not None:
            problems.append(
                f"{key}: port is only for {' and '.join(route_ports)} routes ({route.upstream!r} listens on its own, configured port)"
            )
        # Each network it allows is checked by its type (components/shared/model.py: ROUTE_ALLOW).
        if rules.admin_ui and not route.allow:
            problems.append(
                f"{key}: allow is required for upstream {route.upstream!r} (the source networks allowed to reach the {rules.admin_ui} UI)"
            )
        if rules.root_path and route.path != "/":
            problems.append(f"{key}: path must be '/' for upstream {route.upstream!r} ({rules.root_path})")
    for name, upstream in offered.items():
        count = sum(route.upstream == name for _, route in routes)
        if upstream.rules.one_route and count != 1:
            problems.append(f"edge.routes: exactly one route must have upstream {name!r} (found {count}): {upstream.rules.one_route}")
    return problems


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    server = SERVICE.server
    # The only public binds of the deployment: the host firewall leaves them alone.
    return Declaration(
        listeners=(
            Listener(server, HTTP_PORT, "Nginx (HTTP)", "Nginx (HTTP)", None),
            Listener(server, HTTPS_PORT, "Nginx (HTTPS)", "Nginx (HTTPS)", None),
        ),
        not_backed_up={"nginx": "stateless: its configuration and certificates' paths are rendered by this program"},
        placements=(Placement(server, "nginx", MEMORY_MIB),),
        # The ACME client runs as `docker run <versions.lego>` from its scripts.
        pulls=(Pull(server, config.versions.lego, "the ACME client's scripts (docker run)"),) if config.acme_hosts() else (),
    )


SERVICE = Service("nginx", declare, "application")
