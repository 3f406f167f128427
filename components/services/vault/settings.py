"""Vault's settings (``vault``) and what it declares: the API and cluster ports, the route rules of its UI,
its raft snapshot as a backup, its memory. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field, PrivateAttr, model_validator

from components.shared.model import SWARM_MANAGER, BoundNetwork, Domain, Model, Port, VaultApiAddr, VaultClusterAddr
from components.shared.service import (
    CONTAINERS,
    JENKINS,
    PULUMI,
    BackupSource,
    Declaration,
    Listener,
    Placement,
    RouteRules,
    Service,
    Upstream,
)

if TYPE_CHECKING:
    from components.config import StackConfig


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
    token_bound_cidrs: tuple[BoundNetwork, ...] = Field(default=(), alias="tokenBoundCidrs", strict=False)

    @model_validator(mode="after")
    def _ttl_within_max(self) -> VaultJenkins:
        if self.token_ttl_seconds > self.token_max_ttl_seconds:
            raise ValueError(
                f"tokenTtlSeconds ({self.token_ttl_seconds}) is more than tokenMaxTtlSeconds ({self.token_max_ttl_seconds})"
            )
        return self


class VaultSettings(Model):
    """Vault on the application server: how it is built, sealed and reached (see components/services/vault/component.py)."""

    distribution: Literal["vault", "openbao"] = "vault"
    key_shares: int = Field(default=5, alias="keyShares", ge=1, le=10)
    key_threshold: int = Field(default=3, alias="keyThreshold", ge=1, le=10)
    port: Port = 8200
    cluster_port: Port = Field(default=8201, alias="clusterPort")
    # Addresses Vault advertises; by default the application server's private IP and the ports above.
    api_addr: Optional[VaultApiAddr] = Field(default=None, alias="apiAddr")
    cluster_addr: Optional[VaultClusterAddr] = Field(default=None, alias="clusterAddr")
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


@dataclass(frozen=True)
class Distribution:
    """What differs between HashiCorp Vault's image and OpenBao's: the CLI's name, the directories
    the image's entrypoint hands to its unprivileged user, and the CLI's environment prefix."""

    binary: str
    home: str
    env_prefix: str
    # HashiCorp Vault knows mlock, and its image's entrypoint gives the binary cap_ipc_lock, which
    # only runs with IPC_LOCK; OpenBao dropped mlock and warns about `disable_mlock`.
    mlock: bool
    # OpenBao refuses to enable audit devices through the API: they are declared in the server config.
    declarative_audit: bool

    @property
    def config_file(self) -> str:
        return f"{self.home}/config/samarth.hcl"

    @property
    def data_dir(self) -> str:
        return f"{self.home}/file"

    @property
    def logs_dir(self) -> str:
        return f"{self.home}/logs"

    @property
    def tls_dir(self) -> str:
        return f"{self.home}/tls"

    @property
    def recovery_dir(self) -> str:
        """Where a fresh init's output is kept (root-only) until the stack's state holds it."""
        return f"{self.home}/recovery"


DISTRIBUTIONS = {
    "vault": Distribution(binary="vault", home="/vault", env_prefix="VAULT", mlock=True, declarative_audit=False),
    "openbao": Distribution(binary="bao", home="/openbao", env_prefix="BAO", mlock=False, declarative_audit=True),
}


def server_name(settings: VaultSettings, domain: str) -> str:
    """The name Vault's certificate is issued for and every client verifies: ``vault.serverName``, by
    default ``vault.<domain>``."""
    return settings.server_name or f"vault.{domain}"


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    settings = config.vault
    server = SERVICE.server
    # Vault's TLS is kept on the private hop too, its certificate verified against its CA and name.
    tls_name = None if settings.plain_http else server_name(settings, config.domain)
    return Declaration(
        # The API: Nginx's container (the UI route), swarm-master's deployments, Jenkins (its AppRole,
        # firewall.jenkins) and Pulumi's Vault provider. The cluster port serves a single node: nobody else.
        listeners=(
            Listener(
                server, settings.port, "vault.port", "Vault API", (CONTAINERS, SWARM_MANAGER, JENKINS, PULUMI), published=False, configured=True
            ),
            Listener(server, settings.cluster_port, "vault.clusterPort", "Vault cluster", (), published=False, configured=True),
        ),
        upstreams=(
            Upstream("vault", server, settings.port, scheme=settings.scheme, tls_server_name=tls_name, rules=RouteRules(admin_ui="Vault")),
        ),
        backups=(BackupSource(server, "vault", "vault-raft", "vault", DISTRIBUTIONS[settings.distribution].binary),),
        not_backed_up={"vault audit log": "an audit trail, not needed to restore Vault; it stays on its protected volume"},
        placements=(Placement(server, "vault", settings.memory_mib),),
    )


SERVICE = Service("vault", declare, "application")
