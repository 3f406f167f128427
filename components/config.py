"""The stack's configuration, validated as a whole before any resource is registered.

Pulumi hands the program one JSON document per top-level key (``samarth-infra:servers`` and so on).
``load_stack_config`` turns them into typed, frozen models and raises ``ConfigError`` naming the key
path and what is wrong, so a bad stack file stops ``pulumi preview`` before anything is planned.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from components.services.backups.catalogue import METHODS as BACKUP_METHODS
from components.services.databases.catalogue import (
    CATALOGUE,
    DATABASE_SERVERS,
    ENGINES,
    Container,
    Service,
    containers,
    image_major,
    template_problems,
)
from components.shared.ports import APPLICATION_FIXED, SWARM_FIXED
from components.shared.systemd_time import calendar_event, time_span_usec

SERVER_NAMES: tuple[ServerName, ...] = ("application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3")
ServerName = Literal["application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3"]


def server_name(name: str) -> ServerName:
    """``name`` as a ``ServerName`` (a Host's resource name, say), or ``ValueError``."""
    for known in SERVER_NAMES:
        if name == known:
            return known
    raise ValueError(f"{name!r} is not a server of the deployment (expected one of {', '.join(SERVER_NAMES)})")

# RFC 1918 plus RFC 6598 (carrier-grade NAT), the ranges a cloud hands out as private addresses.
PRIVATE_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

class ConfigError(ValueError):
    """A stack configuration problem; the message names every offending key path."""


class Model(BaseModel):
    """Strict base: unknown keys (typos) are errors, types are not coerced (``true`` is not a count,
    ``"5"`` is not a number), and validated config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


def _private_ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if not any(address in network for network in PRIVATE_NETWORKS):
        ranges = ", ".join(str(n) for n in PRIVATE_NETWORKS)
        raise ValueError(f"{value} is not a private address (expected one of {ranges})")
    return value


# ASCII only: with IGNORECASE alone, [a-z] would also match the Kelvin sign and the long s.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.I | re.A)


def _address(value: str) -> str:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value) or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is neither an IP address nor a host name")
    return value


def _domain(value: str) -> str:
    if "." not in value or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS domain")
    return value.lower()


# The one rule for every pinned image tag and release reference (README, "Versions"): a full version
# (x.y or x.y.z..., optional "v", word prefix and suffix), a dated release tag (MinIO's RELEASE.2025-09-07T16-13-09Z),
# or, for git releases, a full commit id. Anything else (a major-only tag such as "16", a named channel
# such as "alpine", "mainline", "stable" or "lts") can move under the same name, so it is refused.
# A word prefix is part of some projects' release tags (PostHog's "release-1.40.0").
_FULL_VERSION = re.compile(r"([A-Za-z]+[-_])?v?[0-9]+(\.[0-9]+)+([-+_.][A-Za-z0-9][A-Za-z0-9._+-]*)?", re.ASCII)
_DATED_RELEASE = re.compile(
    r"([A-Za-z]+[.-])?[0-9]{4}-?[0-9]{2}-?[0-9]{2}([T.-][A-Za-z0-9][A-Za-z0-9._-]*)?", re.ASCII
)
_COMMIT = re.compile(r"[0-9a-f]{40}", re.ASCII)
_REPOSITORY = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*", re.ASCII)
PINNED_FORMS = "a full version (x.y or x.y.z, optional suffix), a dated release tag (RELEASE.2025-09-07T16-13-09Z)"


def _pinned_tag(tag: str, commit_allowed: bool) -> bool:
    forms = (_FULL_VERSION, _DATED_RELEASE, *((_COMMIT,) if commit_allowed else ()))
    return any(form.fullmatch(tag) for form in forms)


def _image_ref(value: str) -> str:
    """``name:tag`` with a pinned tag, or ``name[:tag]@sha256:<digest>``."""
    name, _, digest = value.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest, re.ASCII):
        raise ValueError(f"{value!r} has a malformed digest (expected sha256:<64 hex>)")
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"{value!r} is not an image reference (lower-case repository name, then :tag)")
    if digest:
        return value
    if not tag:
        raise ValueError(f"{value!r} has no tag; pin a version such as {value}:1.2.3 or a digest")
    if not _pinned_tag(tag, commit_allowed=False):
        raise ValueError(f"{value!r} uses the moving tag {tag!r}; pin {PINNED_FORMS}, or a digest (name:tag@sha256:...)")
    return value


def _release_ref(value: str) -> str:
    """A release tag or full commit id of an external git repository."""
    if not _pinned_tag(value, commit_allowed=True):
        raise ValueError(f"{value!r} is not a pinned release; use {PINNED_FORMS}, or a full 40-character commit id")
    return value


# Host key types OpenSSH and pulumi-command both verify; DSA is refused by current OpenSSH.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
# The comment the committed stacks' example keys carry: they are not any server's key.
EXAMPLE_HOST_KEY_MARK = "example-key-replace-with-tools.hostkeys"
HOST_KEYS_COMMAND = "python -m tools.hostkeys --stack {stack}"


def _host_key(value: str) -> str:
    """``<type> <base64 blob> [comment]`` as in known_hosts, the blob naming the same type."""
    parts = value.split()
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise ValueError(f"{value[:40]!r} is not an SSH public host key ('<type> <base64>', type one of {', '.join(HOST_KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {parts[0]} key is not valid base64") from None
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    if blob[4 : 4 + length] != parts[0].encode():
        raise ValueError(f"the key data is not a {parts[0]} key (was it copied whole?)")
    return value


def image_repository(ref: str) -> str:
    """``hashicorp/vault`` of ``hashicorp/vault:1.20.4`` (registry host kept, tag and digest dropped)."""
    name = ref.partition("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


PrivateIPv4 = Annotated[str, AfterValidator(_private_ipv4)]
HostKey = Annotated[str, AfterValidator(_host_key)]
Address = Annotated[str, AfterValidator(_address)]
Domain = Annotated[str, AfterValidator(_domain)]
ImageRef = Annotated[str, AfterValidator(_image_ref)]
ReleaseRef = Annotated[str, AfterValidator(_release_ref)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Server(Model):
    """One machine of the deployment, as the operator declares it."""

    private_ip: PrivateIPv4 = Field(alias="privateIp")
    public_address: Optional[Address] = Field(default=None, alias="publicAddress")
    ssh_user: str = Field(default="samarth-devops", alias="sshUser", min_length=1, pattern=r"^[a-z_][a-z0-9_.-]*$")
    ssh_port: Port = Field(default=22, alias="sshPort")
    memory_mib: int = Field(alias="memoryMib", ge=512)
    cpus: int = Field(ge=1)
    # The server's SSH host key, pinned: every connection (commands and Docker) refuses any other.
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")
    # Disk space the server offers to what the program keeps there (backup repositories); unset: not checked.
    disk_gib: Optional[int] = Field(default=None, alias="diskGib", ge=1)


class JumpHost(Model):
    host: Address
    user: str = Field(default="samarth-devops", min_length=1)
    port: Port = 22
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")


class Access(Model):
    """How the machine running Pulumi reaches the servers.

    The seed clones this repository on the application server, so by default every server is reached
    over its private IP. ``via: public`` uses each server's public address instead; a ``jumpHost``
    tunnels either through a bastion (``ssh -J``).
    """

    via: Literal["private", "public"] = "private"
    jump_host: Optional[JumpHost] = Field(default=None, alias="jumpHost")


class PostHogImages(Model):
    """The images the pinned posthog-deploy compose file runs, each replaced by this pin in the program's
    compose override (components/services/observability/component.py; docs/upstreams.md says why each one)."""

    web: ImageRef
    clickhouse: ImageRef
    kafka: ImageRef
    zookeeper: ImageRef
    postgres: ImageRef
    redis: ImageRef


class Versions(Model):
    """Every image and external release the program deploys, pinned. Promotion copies this map.

    ``name:tag``, ``name@sha256:<digest>`` or both (``name:tag@sha256:<digest>``: the tag says which
    release, the digest which build; official tags are rebuilt in place). Engines no catalogue
    service uses may be left out; one that is used must be pinned (checked in ``StackConfig``).
    """

    postgres: ImageRef
    redis: ImageRef
    rabbitmq: ImageRef
    # FusionAuth's search engine (OpenSearch 2.x); Elasticsearch only for a service that asks for it.
    opensearch: Optional[ImageRef] = None
    elasticsearch: Optional[ImageRef] = None
    # HashiCorp Vault or a compatible build (OpenBao); ``vault.distribution`` says which.
    vault: ImageRef
    # getsentry/self-hosted release tag, and the posthog-deploy commit (it has no release tags).
    sentry: ReleaseRef
    posthog: ReleaseRef
    posthog_images: PostHogImages = Field(alias="posthogImages")
    # MinIO's community image is frozen (docs/upstreams.md): point this at a maintained compatible build if needed.
    minio: ImageRef
    registry: ImageRef
    nginx: ImageRef
    # The ACME client (goacme/lego) that obtains and renews Nginx's certificates (edge.tls.mode acme).
    lego: ImageRef
    # restic's official image: the backup agents copy its static binary onto each server.
    restic: ImageRef
    # rclone's official image: with backups.offsite, restic reaches the off-site repository through it.
    rclone: Optional[ImageRef] = None

    @field_validator("postgres")
    @classmethod
    def _postgres_has_a_version_tag(cls, value: str) -> str:
        # The data path and the major-version check on the server both follow the tag's major version.
        if image_major(value) is None:
            raise ValueError(
                f"{value!r} has no version tag; write postgres:<version> or postgres:<version>@sha256:<digest> "
                "(the data path and the upgrade check follow the major version)"
            )
        return value


class Capacity(Model):
    headroom_percent: int = Field(default=10, alias="headroomPercent", ge=0, le=90)


SWARM_MANAGER = "swarm-master"
SwarmWorker = Literal["swarm-node2", "swarm-node3"]
SWARM_WORKERS: tuple[SwarmWorker, ...] = ("swarm-node2", "swarm-node3")
# Labels the program sets on every swarm node itself (see components/services/swarm/component.py).
SWARM_AUTOMATIC_LABELS = ("role", "memory_mib")
LabelKey = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{0,128}$")]


class Swarm(Model):
    """The Docker Swarm over swarm-master (manager) and its workers.

    ``workers`` lists the servers that are members: taking one out drains it, makes it leave and
    removes it from the node list. ``labels`` are extra node labels per member, for placement
    constraints (``node.labels.<key>``); ``role`` and ``memory_mib`` are set by the program.
    """

    workers: list[SwarmWorker] = Field(default_factory=lambda: list(SWARM_WORKERS))
    labels: dict[ServerName, dict[LabelKey, LabelValue]] = Field(default_factory=dict)
    encrypt_overlay: bool = Field(default=True, alias="encryptOverlay")
    registry_login: bool = Field(default=True, alias="registryLogin")

    @property
    def members(self) -> tuple[str, ...]:
        return (SWARM_MANAGER, *self.workers)


class VaultTls(Model):
    """The operator's own TLS for Vault instead of the program's private CA: certificate and key are
    files already on the application server (PEM); ``caFile`` is the issuing CA's certificate on the
    machine running Pulumi, read when the stack is validated: the Vault provider, Nginx and Jenkins
    (stack output ``vaultCaCertificate``) verify Vault with it."""

    cert_file: str = Field(alias="certFile", pattern=r"^/")
    key_file: str = Field(alias="keyFile", pattern=r"^/")
    ca_file: str = Field(alias="caFile", pattern=r"^/")
    _ca_certificate: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _read_ca(self) -> VaultTls:
        try:
            text = Path(self.ca_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"caFile: cannot read {self.ca_file} on this machine ({error.__class__.__name__})") from None
        if not (text.startswith("-----BEGIN CERTIFICATE-----") and text.endswith("-----END CERTIFICATE-----")):
            raise ValueError(f"caFile: {self.ca_file} is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)")
        self._ca_certificate = text + "\n"
        return self

    @property
    def ca_certificate(self) -> str:
        """The CA certificate's PEM text, as read from ``caFile``."""
        return self._ca_certificate


class VaultJenkins(Model):
    """The AppRole Jenkins logs in with: short-lived tokens, optionally bound to Jenkins' addresses."""

    token_ttl_seconds: int = Field(default=1200, alias="tokenTtlSeconds", ge=60)
    token_max_ttl_seconds: int = Field(default=3600, alias="tokenMaxTtlSeconds", ge=60)
    # A YAML list; not strict about the container type, only about its items.
    token_bound_cidrs: tuple[str, ...] = Field(default=(), alias="tokenBoundCidrs", strict=False)

    @model_validator(mode="after")
    def _ttl_within_max(self) -> VaultJenkins:
        if self.token_ttl_seconds > self.token_max_ttl_seconds:
            raise ValueError(
                f"tokenTtlSeconds ({self.token_ttl_seconds}) is more than tokenMaxTtlSeconds ({self.token_max_ttl_seconds})"
            )
        for cidr in self.token_bound_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"tokenBoundCidrs: {cidr!r} is not a CIDR block") from None
        return self


class VaultSettings(Model):
    """Vault on the application server: how it is built, sealed and reached (see components/services/vault/component.py)."""

    distribution: Literal["vault", "openbao"] = "vault"
    key_shares: int = Field(default=5, alias="keyShares", ge=1, le=10)
    key_threshold: int = Field(default=3, alias="keyThreshold", ge=1, le=10)
    port: Port = 8200
    cluster_port: Port = Field(default=8201, alias="clusterPort")
    # Addresses Vault advertises; by default the application server's private IP and the ports above.
    api_addr: Optional[str] = Field(default=None, alias="apiAddr", pattern=r"^https?://[^\s/]+$")
    cluster_addr: Optional[str] = Field(default=None, alias="clusterAddr", pattern=r"^https://[^\s/]+$")
    # TLS by default, from a private CA the program creates (components/services/vault/component.py); `tls` uses the
    # operator's files instead; plain HTTP only when a stack says `plainHttp: true` (warned about).
    tls: Optional[VaultTls] = None
    plain_http: bool = Field(default=False, alias="plainHttp")
    # The name Vault's certificate is issued for and clients verify; default vault.<domain>.
    server_name: Optional[Domain] = Field(default=None, alias="serverName")
    memory_mib: int = Field(default=1024, alias="memoryMib", ge=256)
    # HashiCorp Vault only (OpenBao has no mlock). Off by default: with integrated storage HashiCorp
    # strongly recommends `disable_mlock = true` (the raft database is memory-mapped, and locked pages
    # would count against the container's memory limit) and no swap on the host.
    mlock: bool = False
    # File name on the audit volume; the audit device appends one JSON line per request.
    audit_file: str = Field(default="audit.log", alias="auditFile", pattern=r"^[A-Za-z0-9._-]+$")
    jenkins: VaultJenkins = VaultJenkins()


    @property
    def scheme(self) -> str:
        """How clients reach Vault: https unless the stack serves it in plain HTTP."""
        return "http" if self.plain_http else "https"
    @model_validator(mode="after")
    def _threshold_within_shares(self) -> VaultSettings:
        if self.key_threshold > self.key_shares:
            raise ValueError(f"keyThreshold ({self.key_threshold}) is more than keyShares ({self.key_shares})")
        if self.port == self.cluster_port:
            raise ValueError(f"clusterPort: {self.cluster_port} is also the API port")
        if self.plain_http and self.tls is not None:
            raise ValueError("plainHttp: true turns TLS off, yet tls is set; keep one of them")
        if self.plain_http and self.api_addr and self.api_addr.startswith("https://"):
            raise ValueError(f"apiAddr: {self.api_addr} is https, yet plainHttp is true")
        if not self.plain_http and self.api_addr and self.api_addr.startswith("http://"):
            raise ValueError(f"apiAddr: {self.api_addr} is plain http, yet Vault serves TLS (set plainHttp: true to turn TLS off)")
        return self


def _absolute_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]", value) or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute path (letters, digits and '._-/' only)")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
        raise ValueError(f"{value!r} is not an email address")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
Email = Annotated[str, AfterValidator(_email)]


def _seconds_as_text(value: Any) -> Any:
    """A whole number of seconds, as systemd reads it without a unit (``300``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative; a delay is zero or more seconds")
        return str(value)
    return value


def _time_span(value: str) -> str:
    time_span_usec(value)
    return value


# A systemd timer's OnCalendar= and one of its time spans (RandomizedDelaySec=), both as systemd 252
# reads them (components/shared/systemd_time.py); a span may also be a whole number of seconds.
CalendarEvent = Annotated[str, AfterValidator(calendar_event)]
TimeSpan = Annotated[str, BeforeValidator(_seconds_as_text), AfterValidator(_time_span)]


class SentrySettings(Model):
    """Self-hosted Sentry on the application server; Nginx serves ``hostName`` from ``privateIp:port``.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 9000
    admin_email: Email = Field(alias="adminEmail")
    retention_days: int = Field(default=90, alias="retentionDays", ge=1, le=3650)
    directory: AbsolutePath = "/opt/samarth/sentry"


class PostHogSettings(Model):
    """PostHog (posthog-deploy) on the application server; Nginx serves ``hostName`` over HTTPS.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 8023
    directory: AbsolutePath = "/opt/samarth/posthog"


OBSERVABILITY_SERVICES = ("sentry", "posthog")


class ObservabilitySettings(Model):
    sentry: SentrySettings
    posthog: PostHogSettings

    def enabled(self) -> list[str]:
        """Names of the services this stack installs, of ``OBSERVABILITY_SERVICES``."""
        return [name for name in OBSERVABILITY_SERVICES if getattr(self, name).enabled]

    @model_validator(mode="after")
    def _distinct(self) -> ObservabilitySettings:
        if self.sentry.port == self.posthog.port:
            raise ValueError(f"posthog.port: {self.posthog.port} is already sentry.port")
        if self.sentry.directory == self.posthog.directory:
            raise ValueError(f"posthog.directory: {self.posthog.directory} is already sentry.directory")
        return self


# --- edge: Nginx routes (components/services/edge/component.py) -------------------------------------------------------

# The upstreams a route can name are the components' to declare (ports.Upstream); load_deployment checks
# every route against them. Sentry and PostHog also get a route from their observability hostName
# (StackConfig.edge_routes).


def _url_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ValueError(f"{value!r} is not a URL path (starts with '/', letters, digits, '._~/-' only)")
    return value


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None


# The widest public network a route to an admin UI (Vault) may allow: an office, not the internet.
PUBLIC_ALLOW_MIN_PREFIX = {4: 24, 6: 48}


def _narrow_network(value: str) -> bool:
    network = ipaddress.ip_network(value)
    if network.version == 4 and any(network.subnet_of(private) for private in PRIVATE_NETWORKS):
        return True
    if network.version == 6 and network.subnet_of(ipaddress.IPv6Network("fc00::/7")):
        return True
    return network.prefixlen >= PUBLIC_ALLOW_MIN_PREFIX[network.version]


UrlPath = Annotated[str, AfterValidator(_url_path)]
Network = Annotated[str, AfterValidator(_network)]
HostName = Annotated[str, AfterValidator(_domain)]


LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
# The default, so that no stack but the one that sets production explicitly can hit Let's Encrypt's rate limits.
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Twice a day, as certbot does.
DEFAULT_RENEWAL_SCHEDULE = "*-*-* 04,16:00:00"


class Acme(Model):
    """The ACME CA the program gets certificates from (components/services/edge/acme.py)."""

    directory_url: str = Field(default=LETSENCRYPT_STAGING, alias="directoryUrl", pattern=r"^https://[A-Za-z0-9.:-]+(/[A-Za-z0-9._~/-]*)?$")
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

    def operator_files(self, host: str) -> Optional[CertificateFiles]:
        """The operator's certificate for ``host``, or ``None`` when the program obtains it over ACME."""
        if self.mode == "files":
            assert self.certificate_path is not None and self.key_path is not None
            return CertificateFiles(certificatePath=self.certificate_path, keyPath=self.key_path)
        return self.files.get(host)


class Route(Model):
    """``host`` (+ ``path``) served by Nginx, proxied to ``upstream``.

    ``upstream`` names a service a component offers Nginx (``ports.Upstream``, checked by
    ``load_deployment``); ``swarm`` needs the ``port`` the swarm publishes. ``allow`` limits the source
    networks.
    """

    host: HostName
    path: UrlPath = "/"
    upstream: str
    port: Optional[Port] = None
    allow: Optional[list[Network]] = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _port_and_allow(self) -> Route:
        if self.upstream == "swarm" and self.port is None:
            raise ValueError("port is required for upstream 'swarm' (the port the swarm service publishes)")
        if self.upstream != "swarm" and self.port is not None:
            raise ValueError(
                f"port is only for swarm routes ({self.upstream!r} listens on its own, configured port)"
            )
        if self.upstream == "vault":
            if not self.allow:
                raise ValueError("allow is required for upstream 'vault' (the source networks allowed to reach the Vault UI)")
            too_wide = [network for network in self.allow if not _narrow_network(network)]
            if too_wide:
                raise ValueError(
                    f"allow: {', '.join(too_wide)} opens Vault to the internet; allow private networks, or public "
                    f"ones of at most /{PUBLIC_ALLOW_MIN_PREFIX[4]} (IPv4) or /{PUBLIC_ALLOW_MIN_PREFIX[6]} (IPv6)"
                )
        if self.upstream == "registry" and self.path != "/":
            raise ValueError("path must be '/' for upstream 'registry' (docker clients call /v2/ at the root)")
        return self


class Edge(Model):
    tls: EdgeTls
    routes: list[Route] = Field(min_length=1)

    @field_validator("routes")
    @classmethod
    def _one_registry_route(cls, routes: list[Route]) -> list[Route]:
        registry = [i for i, r in enumerate(routes) if r.upstream == "registry"]
        if len(registry) != 1:
            raise ValueError(
                f"exactly one route must have upstream 'registry' (found {len(registry)}): "
                "it is the registry's public name for docker login"
            )
        return routes

    @property
    def registry_host(self) -> str:
        """The registry's public name: the host of the one route to it (validated above). The registry
        component receives it as an argument, so it never reads the edge's routes itself."""
        (host,) = [route.host for route in self.routes if route.upstream == "registry"]
        return host


# --- databases (db1, db2): components/services/databases/catalogue.py holds the services; a stack adds or overrides them.


def _engine_name(value: str) -> str:
    if value not in ENGINES:
        raise ValueError(f"unknown engine {value!r} (known engines: {', '.join(sorted(ENGINES))})")
    return value


def _database_server(value: str) -> str:
    if value not in DATABASE_SERVERS:
        raise ValueError(f"{value!r} is not a database server (databases run on {' or '.join(DATABASE_SERVERS)})")
    return value


def _distinct(values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed more than once")
    return values


EngineName = Annotated[str, AfterValidator(_engine_name)]
DatabaseServerName = Annotated[str, AfterValidator(_database_server)]
ServiceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$", max_length=48)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ContainerMemory = Annotated[int, Field(ge=64)]


class DatabaseService(Model):
    """A service added to the catalogue, or the fields of a catalogue service a stack overrides.

    ``env`` is merged into the catalogue's map (a ``null`` value removes a key); the other fields replace.
    """

    server: Optional[DatabaseServerName] = None
    engines: Optional[Annotated[list[EngineName], AfterValidator(_distinct), Field(min_length=1)]] = None
    env: dict[EnvName, Optional[str]] = Field(default_factory=dict)
    host_ports: dict[EngineName, Port] = Field(default_factory=dict, alias="hostPorts")
    memory_mib: dict[EngineName, ContainerMemory] = Field(default_factory=dict, alias="memoryMib")


class Databases(Model):
    """Sizes per engine (``memoryMib``, MiB per container) and services added or overridden."""

    memory_mib: dict[EngineName, ContainerMemory] = Field(default_factory=dict, alias="memoryMib")
    services: dict[ServiceName, DatabaseService] = Field(default_factory=dict)

    def catalogue(self) -> tuple[Service, ...]:
        """The catalogue with this stack's overrides applied, then the services it adds, in order."""
        merged: dict[str, Service] = {s.name: s for s in CATALOGUE}
        for name, override in self.services.items():
            base = merged.get(name)
            env = {**(base.env if base else {}), **override.env}
            merged[name] = Service(
                name=name,
                server=override.server or (base.server if base else ""),
                engines=tuple(override.engines or (base.engines if base else ())),
                env={k: v for k, v in env.items() if v is not None},
                host_ports={**(base.host_ports if base else {}), **override.host_ports},
                memory_mib={**(base.memory_mib if base else {}), **override.memory_mib},
            )
        return tuple(merged.values())

    def containers(self) -> list[Container]:
        return containers(self.catalogue(), self.memory_mib)

    def problems(self) -> list[str]:
        """Cross-field mistakes, each naming its key path; empty when the section is consistent."""
        problems: list[str] = []
        catalogued = {s.name for s in CATALOGUE}
        for name, override in self.services.items():
            path = f"databases.services.{name}"
            if name not in catalogued:
                for key, value in (("server", override.server), ("engines", override.engines)):
                    if value is None:
                        problems.append(
                            f"{path}.{key}: required for a service not in the catalogue ({', '.join(sorted(catalogued))})"
                        )
        services = self.catalogue()
        for service in services:
            path = f"databases.services.{service.name}"
            if not service.server or not service.engines:
                continue
            own_env = self.services.get(service.name, DatabaseService()).env
            for key, template in service.env.items():
                origin = "" if key in own_env else " (from the catalogue: override it, or remove it with null)"
                problems += [f"{path}.env.{key}: {p}{origin}" for p in template_problems(template, service.engines)]
            for field_key, values in (("hostPorts", service.host_ports), ("memoryMib", service.memory_mib)):
                for engine in values:
                    if engine not in service.engines:
                        problems.append(f"{path}.{field_key}.{engine}: {service.name} does not use {engine}")
        if problems:
            return problems
        explicit = {(s.name, e) for s in services for e in s.host_ports}
        taken: dict[tuple[str, int], Container] = {}
        for container in containers(services, self.memory_mib):
            other = taken.setdefault((container.server, container.host_port), container)
            if other is container:
                continue
            blamed = container if (container.service, container.engine) in explicit else other
            if (blamed.service, blamed.engine) in explicit:
                where = f"databases.services.{blamed.service}.hostPorts.{blamed.engine}"
            else:
                where = "databases.services"
            problems.append(
                f"{where}: host port {container.host_port} on {container.server} is taken by both "
                f"{other.name} and {container.name}; give one of them another hostPorts value"
            )
        return problems


# --- backups (components/services/backups/component.py): schedules, retention, where repositories live, size estimates.

def _one_word(value: str) -> str:
    if " " in value:
        raise ValueError(
            f"{value!r} has a space, and the backup agent's target table is split on spaces; write the schedule "
            "without one: a time alone ('02:30'), a repetition ('*:0/15'), weekdays ('Mon..Fri') or a name ('hourly')"
        )
    return value


# A timer's OnCalendar= for a backup target: any calendar event without a space.
BackupSchedule = Annotated[CalendarEvent, AfterValidator(_one_word)]
_HOURLY_POSTGRES: dict[str, BackupSchedule] = {"postgres": "hourly"}


class BackupRetention(Model):
    """How many snapshots ``restic forget`` keeps per target (``--keep-hourly`` and so on)."""

    hourly: int = Field(default=24, ge=0)
    daily: int = Field(default=14, ge=0)
    weekly: int = Field(default=8, ge=0)
    monthly: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _keeps_something(self) -> BackupRetention:
        if not (self.hourly or self.daily or self.weekly or self.monthly):
            raise ValueError("keeps no snapshot at all: set at least one of hourly, daily, weekly, monthly")
        return self


# Where an off-site repository may be: an S3 endpoint (https, or http only to a private address) with a
# bucket, or an absolute directory over SFTP. Each server's repository is a sub-path named after it.
_OFFSITE_S3 = re.compile(r"s3:(?P<scheme>https?)://(?P<host>[^/:]+)(:(?P<port>[0-9]{1,5}))?/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>(/[A-Za-z0-9._-]+)*)/?", re.A)
_OFFSITE_SFTP = re.compile(r"sftp:(?P<user>[a-z_][a-z0-9_.-]*)@(?P<host>[^:/@]+):(?P<path>/[A-Za-z0-9._/-]*)", re.A)
OFFSITE_FORMS = "s3:https://<host>[:port]/<bucket>[/prefix] or sftp:<user>@<host>:/<absolute path>"


def _offsite_repository(value: str) -> str:
    s3, sftp = _OFFSITE_S3.fullmatch(value), _OFFSITE_SFTP.fullmatch(value)
    match = s3 or sftp
    if match is None:
        raise ValueError(f"{value!r} is not an off-site repository ({OFFSITE_FORMS})")
    _address(match["host"])
    if s3 and s3["scheme"] == "http" and not _is_private_address(s3["host"]):
        raise ValueError(f"{value!r}: plain http only to a private address; use https for {s3['host']}")
    if sftp and "/../" in f"{sftp['path']}/":
        raise ValueError(f"{value!r}: the path may not contain '..'")
    return value.rstrip("/")


def _is_private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or any(address in network for network in PRIVATE_NETWORKS)


class OffsiteRepository(Model):
    """A second repository outside the six servers (docs/backups.md, "Off-site copy"): after each complete
    run the agent copies it there with ``restic copy``. S3: ``accessKeyId`` here, the secret key as the
    secret config ``backupsOffsiteSecretAccessKey``. SFTP: the host's ``hostKey`` (pinned); each server
    logs in with its own key, made on the server, whose public half the operator installs there."""

    repository: Annotated[str, AfterValidator(_offsite_repository)]
    access_key_id: Optional[str] = Field(default=None, alias="accessKeyId", pattern=r"^[A-Za-z0-9+/=._-]{3,128}$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{2,32}$")
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")
    ssh_port: Port = Field(default=22, alias="sshPort")
    # Unset: the same as backups.retention.
    retention: Optional[BackupRetention] = None

    @property
    def kind(self) -> Literal["s3", "sftp"]:
        return "s3" if self.repository.startswith("s3:") else "sftp"

    @property
    def host(self) -> str:
        """The S3 endpoint's or the SFTP server's host name or address."""
        match = _OFFSITE_S3.fullmatch(self.repository) or _OFFSITE_SFTP.fullmatch(self.repository)
        return match["host"] if match else ""

    @model_validator(mode="after")
    def _credentials_fit_the_kind(self) -> OffsiteRepository:
        if self.kind == "s3":
            if self.access_key_id is None:
                raise ValueError("accessKeyId: required for an S3 repository (its secret key: `pulumi config set --secret backupsOffsiteSecretAccessKey`)")
            if self.host_key is not None or "ssh_port" in self.model_fields_set:
                raise ValueError("hostKey and sshPort are for an SFTP repository; this one is S3")
        else:
            if self.host_key is None:
                raise ValueError("hostKey: required for an SFTP repository (the off-site host's SSH host key, pinned: ssh-keyscan it and compare the fingerprint)")
            if self.access_key_id is not None or "region" in self.model_fields_set:
                raise ValueError("accessKeyId and region are for an S3 repository; this one is SFTP")
        return self


class Backups(Model):
    """Scheduled restic backups of every stateful service (see components/services/backups/component.py)."""

    enabled: bool = True
    # Per backup method (postgres, redis, rabbitmq, vault-raft, files, swarm); the rest use ``defaultSchedule``.
    schedules: dict[str, BackupSchedule] = Field(default_factory=lambda: _HOURLY_POSTGRES.copy())
    default_schedule: BackupSchedule = Field(default="daily", alias="defaultSchedule")
    # Each timer's RandomizedDelaySec=: spreads the servers' runs so they do not all hit a repository at once.
    random_delay: TimeSpan = Field(default="300", alias="randomDelay")
    retention: BackupRetention = BackupRetention()
    # The application server's repository (SFTP) lives on this database server.
    application_repository_on: Literal["db1", "db2"] = Field(default="db1", alias="applicationRepositoryOn")
    # Expected size of what each target backs up (GiB), by target name or by method; for the disk estimate.
    data_gib: dict[str, float] = Field(default_factory=dict, alias="dataGib")
    # Share of the data that changes per day (percent): the deduplicated repository grows by it per retained day.
    daily_change_percent: float = Field(default=5, alias="dailyChangePercent", ge=0, le=100)
    offsite: Optional[OffsiteRepository] = None

    @field_validator("schedules")
    @classmethod
    def _known_methods(cls, schedules: dict[str, str]) -> dict[str, str]:
        for method in schedules:
            if method not in BACKUP_METHODS:
                raise ValueError(f"{method!r} is not a backup method (methods: {', '.join(BACKUP_METHODS)})")
        return schedules

    @field_validator("data_gib")
    @classmethod
    def _positive_sizes(cls, sizes: dict[str, float]) -> dict[str, float]:
        for name, size in sizes.items():
            if size < 0:
                raise ValueError(f"{name}: {size} GiB is negative")
        return sizes

    @model_validator(mode="after")
    def _offsite_keeps_what_the_copy_sends(self) -> Backups:
        # The copy sends every complete snapshot the repository holds that the off-site one lacks: one the
        # off-site retention drops sooner would be sent again after every run.
        if self.offsite is not None and self.offsite.retention is not None:
            for bucket in ("hourly", "daily", "weekly", "monthly"):
                offsite, primary = getattr(self.offsite.retention, bucket), getattr(self.retention, bucket)
                if offsite < primary:
                    raise ValueError(
                        f"offsite.retention.{bucket}: {offsite} keeps fewer than backups.retention.{bucket} ({primary}); "
                        "the copy would send the dropped snapshots again after every run"
                    )
        return self

    def offsite_retention(self) -> BackupRetention:
        return self.offsite.retention if self.offsite is not None and self.offsite.retention is not None else self.retention

    def schedule(self, method: str) -> str:
        return self.schedules.get(method, self.default_schedule)


LogSize = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,5}[kmg]$")]


class Logs(Model):
    """Bounded logs on every server (components/platform/host/component.py, docs/logs.md).

    Every container gets ``driver`` with ``maxSize`` per file and ``maxFile`` files: the program's own
    containers explicitly, and everything else (Sentry's and PostHog's compose projects, swarm tasks)
    through the Docker daemon's defaults in /etc/docker/daemon.json. ``json-file`` keeps `docker logs`
    readable by other tools; ``local`` is Docker's compact, compressed format. Vault's audit file is
    rotated by logrotate at ``auditMaxSize``, keeping ``auditKeep`` compressed files. The preflight warns
    when the filesystem of Docker's data root is more than ``dataRootWarnPercent`` full.
    """

    driver: Literal["json-file", "local"] = "json-file"
    max_size: LogSize = Field(default="10m", alias="maxSize")
    # 10m x 3 is what the database containers had before this setting: their inputs stay the same.
    max_file: int = Field(default=3, alias="maxFile", ge=1, le=100)
    audit_max_size: LogSize = Field(default="100m", alias="auditMaxSize")
    audit_keep: int = Field(default=14, alias="auditKeep", ge=1, le=365)
    data_root_warn_percent: int = Field(default=80, alias="dataRootWarnPercent", ge=1, le=99)

    def options(self) -> dict[str, str]:
        """The driver's options, as Docker names them (daemon.json ``log-opts``, ``--log-opt``)."""
        return {"max-size": self.max_size, "max-file": str(self.max_file)}


class FirewallSettings(Model):
    """Who may reach the servers' private ports besides each other (components/platform/firewall/component.py).

    ``operators``: the operators' networks (SSH to every server, admin UIs such as MinIO's console).
    ``pulumiFrom``: the address(es) of the machine that runs Pulumi (SSH, and the Vault and MinIO API
    ports its providers call); by default the application server, where the seed clones this repository.
    ``jumpHostFrom``: the address the jump host's connections come from, when ``access.jumpHost.host`` is
    neither an IP address nor one of the servers. ``dockerBridge``: the default bridge network's
    subnet (daemon.json ``bip``), the source address of Nginx's container reaching a host-network service.
    """

    enabled: bool = True
    operators: list[Network] = Field(min_length=1)
    pulumi_from: Optional[list[Network]] = Field(default=None, alias="pulumiFrom", min_length=1)
    jump_host_from: Optional[list[Network]] = Field(default=None, alias="jumpHostFrom", min_length=1)
    docker_bridge: Network = Field(default="172.17.0.0/16", alias="dockerBridge")


class StackConfig(Model):
    domain: Domain
    servers: dict[ServerName, Server]
    access: Access = Access()
    versions: Versions
    capacity: Capacity = Capacity()
    swarm: Swarm = Swarm()
    vault: VaultSettings = VaultSettings()
    observability: ObservabilitySettings
    databases: Databases = Databases()
    edge: Edge
    backups: Backups = Backups()
    firewall: FirewallSettings
    logs: Logs = Logs()

    @model_validator(mode="after")
    def _servers_are_the_six(self) -> StackConfig:
        missing = [name for name in SERVER_NAMES if name not in self.servers]
        if missing:
            raise ValueError(f"servers: missing {', '.join(missing)} (expected exactly {', '.join(SERVER_NAMES)})")
        seen: dict[str, str] = {}
        for name, server in self.servers.items():
            if server.private_ip in seen:
                raise ValueError(
                    f"servers.{name}.privateIp: {server.private_ip} is already the private IP of {seen[server.private_ip]}"
                )
            seen[server.private_ip] = name
        if self.access.via == "public":
            for name, server in self.servers.items():
                if server.public_address is None:
                    raise ValueError(f"servers.{name}.publicAddress: required because access.via is 'public'")
        return self

    @model_validator(mode="after")
    def _one_key_per_ssh_endpoint(self) -> StackConfig:
        # known_hosts accepts any key listed for an address: two different keys pinned for one
        # address and port (a jump host that is also a server) would let either pass for both.
        pinned: dict[tuple[str, int], tuple[str, str]] = {}
        endpoints = []
        for name, server in self.servers.items():
            address = server.public_address if self.access.via == "public" else server.private_ip
            if address is not None and server.host_key is not None:
                endpoints.append((f"servers.{name}.hostKey", address, server.ssh_port, server.host_key))
        jump = self.access.jump_host
        if jump is not None and jump.host_key is not None:
            endpoints.append(("access.jumpHost.hostKey", jump.host, jump.port, jump.host_key))
        for path, address, port, key in endpoints:
            blob = key.split()[1]
            other_path, other_blob = pinned.setdefault((address, port), (path, blob))
            if other_blob != blob:
                raise ValueError(
                    f"{path}: {address}:{port} is also where {other_path.rsplit('.', 1)[0]} is reached, "
                    f"pinned with another key; one machine has one host key"
                )
        return self

    @model_validator(mode="after")
    def _swarm_labels_name_members(self) -> StackConfig:
        # Here rather than on Swarm so the messages carry the full key path.
        swarm = self.swarm
        if len(set(swarm.workers)) != len(swarm.workers):
            raise ValueError(f"swarm.workers: {', '.join(swarm.workers)} names a worker twice")
        for name, labels in swarm.labels.items():
            if name not in swarm.members:
                raise ValueError(
                    f"swarm.labels.{name}: {name} is not a member of the swarm (members: {', '.join(swarm.members)})"
                )
            for key in labels:
                if key in SWARM_AUTOMATIC_LABELS:
                    raise ValueError(f"swarm.labels.{name}.{key}: {key} is set by the program, choose another key")
        return self


    @model_validator(mode="after")
    def _databases_are_consistent(self) -> StackConfig:
        problems = self.databases.problems()
        if problems:
            raise ValueError("\n  ".join(problems))
        users: dict[str, list[str]] = {}
        for container in self.databases.containers():
            users.setdefault(container.engine, []).append(container.service)
        for engine, services in users.items():
            if getattr(self.versions, engine) is None:
                raise ValueError(f"versions.{engine}: required, {engine} is used by {', '.join(services)}; pin an image")
        return self

    @model_validator(mode="after")
    def _vault_image_is_its_distribution(self) -> StackConfig:
        repository = image_repository(self.versions.vault).rsplit("/", 1)[-1]
        distribution = self.vault.distribution
        if repository != distribution and not repository.startswith(f"{distribution}-"):
            raise ValueError(
                f"vault.distribution: {distribution!r} does not match versions.vault {self.versions.vault!r} "
                f"(an image named {distribution!r} is expected; set distribution to the build the image is)"
            )
        return self

    def listeners(self) -> dict[str, list[tuple[str, int, str]]]:
        """Per server, every port something of the deployment binds: ``(owner, port, protocol)``, fixed
        ports first, then those stack config sets, each named by its key path."""
        ports: dict[str, list[tuple[str, int, str]]] = {name: [] for name in SERVER_NAMES}
        for fixed in APPLICATION_FIXED:
            ports["application"].append((fixed.owner, fixed.port, fixed.protocol))
        for member in self.swarm.members:
            ports[member] += [(fixed.owner, fixed.port, fixed.protocol) for fixed in SWARM_FIXED]
        for name, server in self.servers.items():
            ports[name].append((f"servers.{name}.sshPort", server.ssh_port, "tcp"))
        ports["application"] += [
            ("vault.port", self.vault.port, "tcp"),
            ("vault.clusterPort", self.vault.cluster_port, "tcp"),
            *((f"observability.{name}.port", getattr(self.observability, name).port, "tcp") for name in self.observability.enabled()),
        ]
        for container in self.databases.containers():
            own = self.databases.services.get(container.service)
            key = f"databases.services.{container.service}"
            key += f".hostPorts.{container.engine}" if own and container.engine in own.host_ports else f" ({container.engine})"
            ports[container.server].append((key, container.host_port, "tcp"))
        # The swarm publishes a routed port on every member (routing mesh); routes may share a port.
        published: set[int] = set()
        for key, route in self.edge_routes():
            if route.upstream == "swarm" and route.port is not None and route.port not in published:
                published.add(route.port)
                for member in self.swarm.members:
                    ports[member].append((f"{key}.port", route.port, "tcp"))
        return ports

    @model_validator(mode="after")
    def _ports_are_distinct(self) -> StackConfig:
        problems: list[str] = []
        for server, listeners in self.listeners().items():
            taken: dict[tuple[int, str], str] = {}
            for owner, port, protocol in listeners:
                other = taken.setdefault((port, protocol), owner)
                if other != owner:
                    what = f"SSH ({other})" if other.endswith(".sshPort") else other
                    problems.append(f"{owner}: port {port}/{protocol} on {server} is already used by {what}")
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @model_validator(mode="after")
    def _offsite_has_rclone(self) -> StackConfig:
        if self.backups.enabled and self.backups.offsite is not None and self.versions.rclone is None:
            raise ValueError("versions.rclone: required with backups.offsite (the agents reach the off-site repository through rclone), e.g. rclone/rclone:1.75.0")
        return self

    @model_validator(mode="after")
    def _offsite_is_off_the_site(self) -> StackConfig:
        # A copy on one of the six servers would be lost with the site, and would take disk the capacity
        # check does not plan for.
        offsite = self.backups.offsite if self.backups.enabled else None
        if offsite is not None:
            host = offsite.host.lower()
            for name, server in self.servers.items():
                if host in {server.private_ip, (server.public_address or "").lower()}:
                    raise ValueError(
                        f"backups.offsite.repository: {offsite.host} is servers.{name}; an off-site repository must be "
                        "outside the six servers (another site, a cloud S3 endpoint)"
                    )
        return self

    @model_validator(mode="after")
    def _credentials_have_one_owner(self) -> StackConfig:
        # A database service shares kv/samarth/<name> with a platform service of that name; a key both
        # publish would only fail when the Vault component writes the path, after every server is done.
        installed = {*self.observability.enabled(), "registry", "doc-generator", *(["backups"] if self.backups.enabled else [])}
        problems: list[str] = []
        for service in self.databases.catalogue():
            platform = PLATFORM_CREDENTIALS.get(service.name, ()) if service.name in installed else ()
            for key in sorted(set(service.env) & set(platform)):
                problems.append(
                    f"databases.services.{service.name}.env.{key}: kv/samarth/{service.name} already gets {key} "
                    f"from the platform ({', '.join(platform)}); rename the service or the variable"
                )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def jump_host_sources(self) -> list[str]:
        """Networks the jump host's SSH connections come from (empty without a jump host)."""
        jump = self.access.jump_host
        if jump is None:
            return []
        if self.firewall.jump_host_from:
            return list(self.firewall.jump_host_from)
        for server in self.servers.values():
            # One of the servers is the bastion: towards the others it connects from its private IP.
            if jump.host in (server.private_ip, server.public_address):
                return [f"{server.private_ip}/32"]
        return [str(ipaddress.ip_network(jump.host))]

    @model_validator(mode="after")
    def _jump_host_address_is_known(self) -> StackConfig:
        jump = self.access.jump_host
        if jump is None or self.firewall.jump_host_from:
            return self
        named_server = any(jump.host in (s.private_ip, s.public_address) for s in self.servers.values())
        try:
            ipaddress.ip_address(jump.host)
        except ValueError:
            if not named_server:
                raise ValueError(
                    f"firewall.jumpHostFrom: required because access.jumpHost.host {jump.host!r} is a name "
                    "(the firewall allows SSH from addresses)"
                ) from None
        return self

    @property
    def vault_server_name(self) -> str:
        """The name Vault's certificate is issued for and every client verifies: ``vault.serverName``,
        by default ``vault.<domain>``."""
        return self.vault.server_name or f"vault.{self.domain}"

    def edge_routes(self) -> list[tuple[str, Route]]:
        """Every route Nginx serves, with the config key it comes from: ``edge.routes``, then Sentry and
        PostHog (when enabled) at their ``observability`` hostName."""
        routes = [(f"edge.routes[{index}]", route) for index, route in enumerate(self.edge.routes)]
        for name in self.observability.enabled():
            settings = getattr(self.observability, name)
            routes.append((f"observability.{name}.hostName", Route(host=settings.host_name, upstream=name)))
        return routes

    @model_validator(mode="after")
    def _edge_routes_are_distinct_and_in_domain(self) -> StackConfig:
        seen: dict[tuple[str, str], str] = {}
        for key, route in self.edge_routes():
            if route.upstream in OBSERVABILITY_SERVICES and route.upstream not in self.observability.enabled():
                raise ValueError(
                    f"{key}.upstream: {route.upstream!r} is not installed (observability.{route.upstream}.enabled is false)"
                )
            host_key = f"{key}.host" if key.startswith("edge.") else key
            # A route copied from another stack would otherwise serve (and need a certificate for) its names.
            if route.host != self.domain and not route.host.endswith("." + self.domain):
                raise ValueError(f"{host_key}: {route.host!r} is not under domain {self.domain!r}")
            if (route.host, route.path) in seen:
                raise ValueError(
                    f"{key}: host {route.host!r} and path {route.path!r} are already routed by {seen[route.host, route.path]}"
                )
            seen[route.host, route.path] = key
        return self

    def acme_hosts(self) -> list[str]:
        """The names the program gets certificates for over ACME: every routed host name not served
        from operator files, sorted."""
        if self.edge.tls.mode != "acme":
            return []
        return sorted({route.host for _, route in self.edge_routes()} - set(self.edge.tls.files))

    @model_validator(mode="after")
    def _tls_mode_has_its_keys(self) -> StackConfig:
        # Here rather than on EdgeTls so the messages carry the full key path.
        tls = self.edge.tls
        if tls.mode == "files":
            for key, value in (("certificatePath", tls.certificate_path), ("keyPath", tls.key_path)):
                if value is None:
                    raise ValueError(f"edge.tls.{key}: required because mode is 'files'")
            if tls.acme is not None or tls.files:
                extra = "acme" if tls.acme is not None else "files"
                raise ValueError(f"edge.tls.{extra}: only for mode 'acme' (mode 'files' serves every name from certificatePath/keyPath)")
            return self
        if tls.acme is None:
            raise ValueError("edge.tls.acme: required because mode is 'acme' (at least acme.email)")
        for key, value in (("certificatePath", tls.certificate_path), ("keyPath", tls.key_path)):
            if value is not None:
                raise ValueError(
                    f"edge.tls.{key}: only for mode 'files'; in mode 'acme' a name served from the operator's "
                    "files goes under edge.tls.files.<host name>"
                )
        return self

    @model_validator(mode="after")
    def _certificate_files_name_routed_hosts(self) -> StackConfig:
        routed = {route.host for _, route in self.edge_routes()}
        for host in self.edge.tls.files:
            key = f"edge.tls.files.{host}"
            if host != self.domain and not host.endswith("." + self.domain):
                raise ValueError(f"{key}: {host!r} is not under domain {self.domain!r}")
            if host not in routed:
                raise ValueError(
                    f"{key}: {host!r} is not routed through Nginx (no edge.routes entry or enabled observability hostName), "
                    "so no certificate for it would be served"
                )
        return self


def missing_host_keys(config: StackConfig) -> list[str]:
    """Key paths of the host keys the stack does not pin (servers, then the jump host)."""
    missing = [f"servers.{name}.hostKey" for name, server in config.servers.items() if server.host_key is None]
    jump = config.access.jump_host
    if jump is not None and jump.host_key is None:
        missing.append("access.jumpHost.hostKey")
    return missing


def require_host_keys(config: StackConfig, stack: str) -> None:
    """Refuse a stack that does not pin every SSH host key: without them any machine answering on a
    server's address would receive the Vault unseal keys and every other secret."""
    missing = missing_host_keys(config)
    if missing:
        raise ConfigError(
            "invalid stack configuration:\n  "
            + "\n  ".join(f"{path}: required (the server's SSH host key, pinned)" for path in missing)
            + f"\n  scan the servers, compare the fingerprints and write the keys with: {HOST_KEYS_COMMAND.format(stack=stack)}"
        )



# What the platform's own components publish to kv/samarth/<service> besides the database services:
# the registry, MinIO (for the doc-generator bucket), Sentry and PostHog. A test keeps this equal to
# what the program publishes.
# The servers with backup targets (components/assembly.py); the application server's repository is SFTP
# (no S3 keys).
_BACKUP_KEYS = tuple(
    f"{server.replace('-', '_').upper()}_{key}"
    for server in ("db1", "db2", "application", "swarm-master")
    for key in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD")
    + (() if server == "application" else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
)

PLATFORM_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "backups": _BACKUP_KEYS,
    "registry": ("DOCKER_SERVER", "DOCKER_USERNAME", "DOCKER_PASSWORD"),
    "doc-generator": ("MINIO_URL", "MINIO_USER", "MINIO_PASSWORD"),
    "sentry": ("SENTRY_URL", "SENTRY_ADMIN_EMAIL", "SENTRY_ADMIN_PASSWORD"),
    "posthog": (
        "POSTHOG_URL",
        "POSTHOG_POSTGRES_PASSWORD",
        "POSTHOG_SECRET_KEY",
        "POSTHOG_MINIO_ROOT_USER",
        "POSTHOG_MINIO_ROOT_PASSWORD",
    ),
}

# Top-level keys the program reads; each is one JSON document in the stack file.
TOP_LEVEL_KEYS = tuple(field.alias or name for name, field in StackConfig.model_fields.items())


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    return "".join(parts)


def _describe(error: Mapping[str, Any]) -> str:
    # Literal keys (server names) and aliased fields come back with pydantic's internal location
    # suffixes; strip them so the path reads like the stack file.
    loc = tuple(p for p in error["loc"] if p not in ("[key]",))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling)"
    elif error["type"] == "literal_error" and error["loc"][-1] == "[key]":
        message = f"unknown server {error['input']!r} (expected one of {', '.join(SERVER_NAMES)})"
    elif error["type"] == "missing":
        message = "required key is missing"
    path = _location(loc)
    return f"{path}: {message}" if path else message


def text_problems(value: Any, path: str = "") -> list[str]:
    """Every text in ``value`` (keys and values, at any depth) that would be read as something other
    than it looks: control characters (a newline), leading or trailing whitespace, non-ASCII
    characters (a Cyrillic "а" in a host name). Config is names, addresses, paths and versions."""
    problems: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            problems += [f"{here} (the key){p}" for p in _text_problem(key)]
            problems += text_problems(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += text_problems(item, f"{path}[{index}]")
    else:
        problems += [f"{path}{p}" for p in _text_problem(value)]
    return problems


def _text_problem(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    control = sorted({c for c in value if ord(c) < 32 or ord(c) == 127})
    if control:
        return [f": {value!r} contains the control character(s) {', '.join(repr(c) for c in control)}"]
    if value != value.strip():
        return [f": {value!r} has leading or trailing whitespace"]
    foreign = sorted({c for c in value if not c.isascii()})
    if foreign:
        return [f": {value!r} contains non-ASCII character(s) {', '.join(f'{c!r} (U+{ord(c):04X})' for c in foreign)}"]
    return []


def validate(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain data (what the stack file holds) into a ``StackConfig`` or raise ``ConfigError``."""
    lines = set(text_problems(raw))
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        lines |= {_describe(e) for e in exc.errors()}
    if lines:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(sorted(lines)))
    return config


def validate_versions(raw: Any) -> Versions:
    """The ``versions`` map alone (what promotion copies), with the same key-path messages."""
    try:
        return Versions.model_validate(raw)
    except ValidationError as exc:
        lines = sorted({_describe({**e, "loc": ("versions", *e["loc"])}) for e in exc.errors()})
        raise ConfigError("invalid versions:\n  " + "\n  ".join(lines)) from None


# Read by the program as a secret Output, never through the model, so it cannot end up in a repr.
SECRET_KEYS = ("sshPrivateKey", "vaultInit", "backupsOffsiteSecretAccessKey")


def load_stack_config(project: str, values: Mapping[str, Any]) -> StackConfig:
    """Validate the project's config as the engine hands it over (``"<project>:<key>" -> str``).

    Structured keys arrive as JSON text, scalars as plain text. A key of this project that the
    program does not know is reported, as a typo would otherwise be silently ignored.
    """
    prefix = f"{project}:"
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    for full_key, text in values.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        if key in SECRET_KEYS:
            continue
        if key not in TOP_LEVEL_KEYS:
            unknown.append(f"{key}: unknown key (check the spelling; known keys: {', '.join(TOP_LEVEL_KEYS + SECRET_KEYS)})")
            continue
        try:
            raw[key] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            raw[key] = text
    if unknown:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(sorted(unknown)))
    return validate(raw)


def _secret_setting(
    project: str, values: Mapping[str, Any], secret_keys: frozenset[str], name: str, source: str
) -> Optional[str]:
    """A secret config value, or ``None`` when unset; one stored in plaintext is refused."""
    key = f"{project}:{name}"
    text = values.get(key) or ""
    if not text:
        return None
    if key not in secret_keys:
        raise ConfigError(
            f"invalid stack configuration:\n  {name}: stored in plaintext; "
            f"remove it and run `pulumi config set --secret {name} < {source}`"
        )
    return text


def ssh_private_key(project: str, values: Mapping[str, Any], secret_keys: frozenset[str]) -> Optional[str]:
    """The SSH key from config, or ``None`` to use the SSH agent."""
    return _secret_setting(project, values, secret_keys, "sshPrivateKey", "key")


def imported_vault_init(project: str, values: Mapping[str, Any], secret_keys: frozenset[str]) -> Optional[str]:
    """The init output of a Vault that was initialised outside this stack (``vault operator init
    -format=json``), or ``None`` when the program initialises Vault itself. Only the shape is
    checked here; the text stays out of every message."""
    text = _secret_setting(project, values, secret_keys, "vaultInit", "init.json")
    if text is None:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        document = {}
    keys = document.get("unseal_keys_b64")
    keys_ok = isinstance(keys, list) and bool(keys) and all(isinstance(k, str) for k in keys)
    if not keys_ok or not isinstance(document.get("root_token"), str):
        raise ConfigError(
            "invalid stack configuration:\n  vaultInit: expected the JSON that `vault operator init -format=json` "
            "prints (unseal_keys_b64 and root_token)"
        )
    return text


def offsite_secret_access_key(
    project: str, values: Mapping[str, Any], secret_keys: frozenset[str], config: StackConfig
) -> Optional[str]:
    """The off-site S3 repository's secret key (``backupsOffsiteSecretAccessKey``): required with an S3
    ``backups.offsite``, refused without one (a key nothing uses is a leftover or a typo)."""
    key = _secret_setting(project, values, secret_keys, "backupsOffsiteSecretAccessKey", "secret-access-key")
    offsite = config.backups.offsite if config.backups.enabled else None
    if offsite is not None and offsite.kind == "s3" and key is None:
        raise ConfigError(
            "invalid stack configuration:\n  backupsOffsiteSecretAccessKey: required for the S3 repository in "
            "backups.offsite; run `pulumi config set --secret backupsOffsiteSecretAccessKey < secret-access-key`"
        )
    if key is not None and (offsite is None or offsite.kind != "s3"):
        raise ConfigError(
            "invalid stack configuration:\n  backupsOffsiteSecretAccessKey: set, but backups.offsite is not an "
            "enabled S3 repository; remove it with `pulumi config rm backupsOffsiteSecretAccessKey`"
        )
    return key
