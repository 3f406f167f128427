"""Vault on the application server: the container, its bootstrap, its configuration and the secrets
Jenkins reads.

The program does what used to be done by hand:
1. a Vault (or OpenBao) container with a rendered server config (integrated raft storage on a
   protected volume, UI on, listeners on the private IP and loopback only);
2. remote scripts (components/services/vault/scripts/vault-bootstrap.sh) that initialise it once (the init output is
   kept in a root-only file until the stack's state holds it, then becomes a Pulumi secret) and unseal
   it on every ``pulumi up`` that finds it sealed (after a reboot it is); docs/vault.md;
3. the Vault provider, built from those outputs, for the KV v2 mount ``kv``, a file audit device,
   the ``jenkins`` policy and the AppRole Jenkins logs in with;
4. ``publish(book)``: every service's credentials at ``kv/samarth/<service>`` (the applications', which
   Jenkins reads) or ``kv/platform/<service>`` (the platform's own, operators only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_tls as tls
import pulumi_vault as vault

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, data_volume, pinned_image, service_container
from components.shared.publishing import CredentialBook
from components.shared.service import APPLICATIONS, PLATFORM
from components.shared.shell import render

from .settings import DISTRIBUTIONS, SERVICE, VaultSettings

KV_MOUNT = "kv"
JENKINS = "jenkins"
# How long the bootstrap scripts wait for a freshly started container to answer.
STATUS_ATTEMPTS = 30
STATUS_INTERVAL_SECONDS = 2


# The program's private CA for Vault (when the stack brings no `vault.tls` of its own): the CA lasts
# ten years, the server certificate two, and `pulumi up` renews the server certificate in its last
# 90 days (pulumi-tls replaces a LocallySignedCert inside early_renewal_hours).
CA_VALIDITY_HOURS = 10 * 365 * 24
CERTIFICATE_VALIDITY_HOURS = 2 * 365 * 24
CERTIFICATE_EARLY_RENEWAL_HOURS = 90 * 24
# Where the program writes the CA certificate for the Vault provider, which takes a file path. Relative
# to the project directory, where the CLI runs both the program and the provider plugins, so the
# provider's configuration is the same on every operator's machine.
CA_FILE_DIRECTORY = ".samarth"


def cli_environment(settings: VaultSettings, name: str) -> list[str]:
    """The CLI's environment inside the container (scripts, healthcheck, an operator's ``docker exec``):
    the loopback listener, verified with the CA against the server name as every other client does."""
    dist = DISTRIBUTIONS[settings.distribution]
    envs = [f"{dist.env_prefix}_ADDR={settings.scheme}://127.0.0.1:{settings.port}"]
    if not settings.plain_http:
        envs += [f"{dist.env_prefix}_CACERT={dist.tls_dir}/ca.pem", f"{dist.env_prefix}_TLS_SERVER_NAME={name}"]
    return envs


def certificate_names(name: str, private_ip: str) -> tuple[list[str], list[str]]:
    """What the program's server certificate is issued for: (DNS names, IP addresses). Clients on the
    private network verify ``name`` (Nginx, the provider, the CLI in the container) or the private IP
    (Jenkins with ``VAULT_ADDR=https://<private IP>:8200``)."""
    return [name], [private_ip, "127.0.0.1"]


def write_ca_file(stack: str, pem: str) -> str:
    """Write the CA certificate where the program runs (atomically) and return the path for the provider."""
    path = Path(CA_FILE_DIRECTORY) / f"vault-ca-{stack}.pem"
    path.parent.mkdir(exist_ok=True)
    staging = path.with_name(path.name + ".new")
    staging.write_text(pem)
    staging.replace(path)
    return str(path)


def api_addr(settings: VaultSettings, private_ip: str) -> str:
    return settings.api_addr or f"{settings.scheme}://{private_ip}:{settings.port}"


def audit_file(settings: VaultSettings) -> str:
    return f"{DISTRIBUTIONS[settings.distribution].logs_dir}/{settings.audit_file}"


AUDIT_LOGROTATE_CONF = "/etc/logrotate.d/samarth-vault-audit"


def logrotate_size(size: str) -> str:
    """A ``logs`` size (``100m``) as logrotate spells it (``100M``)."""
    return size if size.endswith("k") else size.upper()


def audit_rotation_script(
    settings: VaultSettings, volume: str, container: str, max_size: str, keep: int, conf: str = AUDIT_LOGROTATE_CONF
) -> str:
    """logrotate's rule for the audit file in ``volume``, HUP to ``container`` after each rotation."""
    return render(
        "vault-audit-rotation.sh",
        "vault-audit-rotation",
        SERVER=SERVICE.server,
        VOLUME=volume,
        AUDIT_FILE=settings.audit_file,
        CONTAINER=container,
        MAX_SIZE=logrotate_size(max_size),
        KEEP=keep,
        LOGROTATE_CONF=conf,
    )


def _hcl(value: Any) -> str:
    """An HCL literal; JSON's string and boolean syntax is HCL's."""
    return json.dumps(value)


def render_server_config(settings: VaultSettings, private_ip: str, node_id: str) -> str:
    """The server's HCL: raft storage on the data volume, UI on, one listener on the private IP (which
    also carries raft's cluster traffic) and one on loopback for the bootstrap scripts and healthcheck.
    Nothing listens on a wildcard address."""
    dist = DISTRIBUTIONS[settings.distribution]
    if not settings.plain_http:
        tls = (
            f"  tls_cert_file = {_hcl(dist.tls_dir + '/cert.pem')}\n"
            f"  tls_key_file  = {_hcl(dist.tls_dir + '/key.pem')}\n"
        )
    else:
        tls = "  tls_disable = true\n"
    cluster_addr = settings.cluster_addr or f"https://{private_ip}:{settings.cluster_port}"
    mlock = f"disable_mlock = {_hcl(not settings.mlock)}\n" if dist.mlock else ""
    audit = (
        f'\naudit "file" "file" {{\n  options {{\n    file_path = {_hcl(audit_file(settings))}\n  }}\n}}\n'
        if dist.declarative_audit
        else ""
    )
    return (
        f"ui            = true\n"
        f"{mlock}"
        f"api_addr      = {_hcl(api_addr(settings, private_ip))}\n"
        f"cluster_addr  = {_hcl(cluster_addr)}\n"
        f"\n"
        f'storage "raft" {{\n'
        f"  path    = {_hcl(dist.data_dir)}\n"
        f"  node_id = {_hcl(node_id)}\n"
        # Raft's fastest timings, which HashiCorp recommends for production: a single node elects
        # itself leader within seconds of starting instead of tens of seconds.
        f"  performance_multiplier = 1\n"
        f"}}\n"
        f"\n"
        f'listener "tcp" {{\n'
        f"  address         = {_hcl(f'{private_ip}:{settings.port}')}\n"
        f"  cluster_address = {_hcl(f'{private_ip}:{settings.cluster_port}')}\n"
        f"{tls}"
        f"}}\n"
        f"\n"
        f'listener "tcp" {{\n'
        f"  address         = {_hcl(f'127.0.0.1:{settings.port}')}\n"
        f"  cluster_address = {_hcl(f'127.0.0.1:{settings.cluster_port}')}\n"
        f"{tls}"
        f"}}\n"
        f"{audit}"
    )


def jenkins_policy(paths: Sequence[str]) -> str:
    """Read each application's path by name (``samarth/<service>``, as ``application_paths`` lists them) and
    list the application paths; nothing else: no write, no other mount, no path of the platform's area
    (``platform/``: backup repositories, admin accounts), and no ``samarth/`` path the program no longer
    publishes (KV v2 keeps a removed path's earlier versions)."""
    reads = "".join(
        f'path "{KV_MOUNT}/data/{path}" {{\n  capabilities = ["read"]\n}}\n\n' for path in sorted(set(paths))
    )
    return (
        f"{reads}"
        f'path "{KV_MOUNT}/metadata/{APPLICATIONS}/*" {{\n'
        f'  capabilities = ["list"]\n'
        f"}}\n"
    )


def _bootstrap(action: str, container: str, settings: VaultSettings) -> str:
    dist = DISTRIBUTIONS[settings.distribution]
    return render(
        "vault-bootstrap.sh",
        f"vault-{action}",
        ACTION=action,
        CONTAINER=container,
        BINARY=dist.binary,
        KEY_SHARES=settings.key_shares,
        KEY_THRESHOLD=settings.key_threshold,
        RECOVERY_DIR=dist.recovery_dir,
        STATUS_ATTEMPTS=STATUS_ATTEMPTS,
        STATUS_INTERVAL_SECONDS=STATUS_INTERVAL_SECONDS,
    )


def init_script(container: str, settings: VaultSettings) -> str:
    """Initialise Vault when it is not, keeping the output on the recovery volume first, and print only
    the init JSON (the command's stdout, kept as a secret). An initialised Vault is accepted only with
    init output kept there by an interrupted run; otherwise it was initialised by someone else and
    this stack would hold no keys for it."""
    return _bootstrap("init", container, settings)


def unseal_script(container: str, settings: VaultSettings) -> str:
    """Unseal Vault when it is sealed, with the keys given on stdin one per line (never in argv or the
    environment: each key goes to ``write sys/unseal key=-`` on its own stdin); then remove the init
    output kept on the recovery volume, which these keys from the stack's state make redundant."""
    return _bootstrap("unseal", container, settings)


class InitOutputError(pulumi.RunError):
    """The init output is not what ``operator init -format=json`` prints; never carries the text."""


def parse_init_output(text: str) -> dict[str, Any]:
    """The init JSON as the bootstrap printed it, checked for the two things the program uses."""
    if not text or not text.strip():
        raise InitOutputError("vault init printed nothing: the init command's output is empty (see README, Vault, recovery)")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InitOutputError(f"vault init output is not JSON (parse error at line {error.lineno}, column {error.colno})") from None
    keys = document.get("unseal_keys_b64") if isinstance(document, dict) else None
    if not (isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)):
        raise InitOutputError("vault init output has no unseal_keys_b64 list")
    if not isinstance(document.get("root_token"), str) or not document["root_token"]:
        raise InitOutputError("vault init output has no root_token")
    return document


@dataclass(frozen=True)
class VaultServerArgs:
    host: Host
    settings: VaultSettings
    image: str
    # The name Vault's certificate is issued for (``settings.server_name``).
    server_name: str
    # Init output of a Vault initialised outside this stack (config ``vaultInit``); None: init here.
    imported_init: Optional[pulumi.Input[str]] = None
    # The kv/samarth/ paths Jenkins' policy reads (``application_paths`` of what the services declare).
    jenkins_paths: Sequence[str] = ()


class VaultServer(pulumi.ComponentResource):
    """Vault on the application server, initialised, unsealed and configured for Jenkins."""

    address: pulumi.Output[str]
    root_token: pulumi.Output[str]
    jenkins_role_id: pulumi.Output[str]
    jenkins_secret_id: pulumi.Output[str]

    def __init__(self, name: str, args: VaultServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:vault:VaultServer", name, None, opts)
        host, settings = args.host, args.settings
        dist = DISTRIBUTIONS[settings.distribution]
        # Children are named from the component's name ("vault" in __main__.py, which keeps every URN).
        self.name = name
        prefix = f"{host.name}-{name}"
        container_name = name

        image = pinned_image(host, self, f"{prefix}-image", args.image)
        data = data_volume(host, self, f"{prefix}-data", f"{prefix}-data")
        audit = data_volume(host, self, f"{prefix}-audit", f"{prefix}-audit")
        # Holds the init output between `operator init` and the state write (components/services/vault/scripts/vault-bootstrap.sh).
        recovery = data_volume(host, self, f"{prefix}-recovery", f"{prefix}-recovery")

        self.server_config = render_server_config(settings, host.spec.private_ip, host.name)
        volumes = [
            docker.ContainerVolumeArgs(volume_name=data.name, container_path=dist.data_dir),
            docker.ContainerVolumeArgs(volume_name=audit.name, container_path=dist.logs_dir),
            docker.ContainerVolumeArgs(volume_name=recovery.name, container_path=dist.recovery_dir),
        ]
        uploads = [docker.ContainerUploadArgs(file=dist.config_file, content=self.server_config)]
        # The CA certificate clients verify Vault with; None when the stack serves plain HTTP.
        self.ca_certificate: Optional[pulumi.Output[str]] = None
        if settings.plain_http:
            pulumi.log.warn(
                "vault.plainHttp is true: Vault serves plain HTTP, so every credential Jenkins reads and the "
                "root token cross the private network unencrypted; remove plainHttp to serve TLS",
                resource=self,
            )
        elif settings.tls is not None:
            self.ca_certificate = pulumi.Output.from_input(settings.tls.ca_certificate)
            volumes += [
                docker.ContainerVolumeArgs(host_path=settings.tls.cert_file, container_path=f"{dist.tls_dir}/cert.pem", read_only=True),
                docker.ContainerVolumeArgs(host_path=settings.tls.key_file, container_path=f"{dist.tls_dir}/key.pem", read_only=True),
            ]
        else:
            self.ca_certificate, certificate, key = self._private_ca(prefix, args.server_name, host.spec.private_ip)
            uploads += [
                docker.ContainerUploadArgs(file=f"{dist.tls_dir}/cert.pem", content=certificate),
                # The private key: readable by the server's own user only (uid 100, gid 1000 in both images).
                docker.ContainerUploadArgs(
                    file=f"{dist.tls_dir}/key.pem", content=key, owner="100", group="1000", permissions="0400"
                ),
            ]
        if self.ca_certificate is not None:
            uploads.append(docker.ContainerUploadArgs(file=f"{dist.tls_dir}/ca.pem", content=self.ca_certificate))

        self.container = service_container(
            host,
            self,
            prefix,
            name=container_name,
            image=image,
            memory_mib=settings.memory_mib,
            # Healthy when the server answers, sealed or not: unsealing is the bootstrap's job.
            healthcheck=Healthcheck(
                tests=["CMD-SHELL", f"{dist.binary} status >/dev/null 2>&1; [ $? -ne 1 ]"], start_period="20s"
            ),
            # Host networking so the listeners bind exactly the addresses in the server config; a
            # published port would need a wildcard listener inside the container.
            network_mode="host",
            command=[dist.binary, "server", f"-config={dist.config_file}"],
            capabilities=docker.ContainerCapabilitiesArgs(adds=["IPC_LOCK"]) if dist.mlock else None,
            envs=cli_environment(settings, args.server_name),
            volumes=volumes,
            uploads=uploads,
        )

        # The audit device appends forever: rotated by size, Vault reopening its file on SIGHUP.
        command.remote.Command(
            f"{prefix}-audit-rotation",
            connection=host.connection,
            create=audit_rotation_script(
                settings, f"{prefix}-audit", container_name, host.logs.audit_max_size, host.logs.audit_keep
            ),
            opts=host.command_options(self, depends_on=[audit, self.container]),
        )

        if args.imported_init is not None:
            init_json = pulumi.Output.secret(args.imported_init)
            init_deps: list[pulumi.Resource] = []
        else:
            init = command.remote.Command(
                f"{prefix}-init",
                connection=host.connection,
                create=init_script(container_name, settings),
                logging=command.remote.Logging.NONE,
                # Its stdout holds the keys: never handed back to a later run as environment.
                add_previous_output_in_env=False,
                opts=host.command_options(
                    self,
                    depends_on=[self.container],
                    additional_secret_outputs=["stdout", "stderr"],
                    # Init runs once: its stdout holds the only copy of the keys in this stack. A new
                    # connection or script must not re-run it, and deleting it would forget the keys.
                    # (Nor may the flag above, added later, re-run it on stacks initialised before.)
                    ignore_changes=["connection", "create", "addPreviousOutputInEnv"],
                    protect=True,
                ),
            )
            init_json = pulumi.Output.secret(init.stdout)
            init_deps = [init]
        init_doc = init_json.apply(parse_init_output)
        self.root_token = pulumi.Output.secret(init_doc.apply(lambda doc: doc["root_token"]))
        unseal_keys: pulumi.Output[str] = pulumi.Output.secret(init_doc.apply(lambda doc: "".join(f"{k}\n" for k in doc["unseal_keys_b64"])))

        self.unseal = command.remote.Command(
            f"{prefix}-unseal",
            connection=host.connection,
            create=unseal_script(container_name, settings),
            stdin=unseal_keys,
            logging=command.remote.Logging.NONE,
            add_previous_output_in_env=False,
            # A reboot or a container restart seals Vault and Pulumi cannot see it (the command provider
            # reads nothing back from the host), so the check runs on every `up`: the stamp replaces
            # this command each run. The script only acts when Vault reports itself sealed.
            triggers=[self.container.id, datetime.now(timezone.utc).isoformat()],
            opts=host.command_options(self, depends_on=[self.container, *init_deps]),
        )

        self.address = pulumi.Output.concat(settings.scheme, "://", host.private_ip, f":{settings.port}")
        # The provider takes the CA as a file: written where the program runs once the CA is known (on
        # the first preview it is not, and neither is the token: the provider's resources show as unknown).
        stack = pulumi.get_stack()
        self.provider = vault.Provider(
            name,
            address=self.address,
            token=self.root_token,
            ca_cert_file=self.ca_certificate.apply(lambda pem: write_ca_file(stack, pem)) if self.ca_certificate is not None else None,
            tls_server_name=None if settings.plain_http else args.server_name,
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.kv = vault.Mount(
            f"{name}-kv",
            path=KV_MOUNT,
            type="kv",
            options={"version": "2"},
            description="Credentials and settings Jenkins reads, one path per service under samarth/",
            opts=self._vault_options(),
        )
        if not dist.declarative_audit:
            vault.Audit(
                f"{name}-audit-file",
                type="file",
                options={"file_path": audit_file(settings)},
                opts=self._vault_options(),
            )
        policy = vault.Policy(f"{name}-policy-jenkins", name=JENKINS, policy=jenkins_policy(args.jenkins_paths), opts=self._vault_options())
        self.approle = approle = vault.AuthBackend(f"{name}-approle", type="approle", path="approle", opts=self._vault_options())
        role = vault.approle.AuthBackendRole(
            f"{name}-approle-jenkins",
            backend=approle.path,
            role_name=JENKINS,
            token_policies=[policy.name],
            token_ttl=settings.jenkins.token_ttl_seconds,
            token_max_ttl=settings.jenkins.token_max_ttl_seconds,
            token_bound_cidrs=list(settings.jenkins.token_bound_cidrs) or None,
            opts=self._vault_options(),
        )
        secret_id = vault.approle.AuthBackendRoleSecretId(
            f"{name}-approle-jenkins-secret-id",
            backend=approle.path,
            role_name=role.role_name,
            opts=self._vault_options(),
        )
        self.jenkins_role_id = role.role_id
        self.jenkins_secret_id = pulumi.Output.secret(secret_id.secret_id)

        self.exports: dict[str, pulumi.Input[str]] = {
            "vaultAddress": self.address,
            "jenkinsRoleId": self.jenkins_role_id,
            "jenkinsSecretId": self.jenkins_secret_id,
        }
        if self.ca_certificate is not None:
            # What Jenkins (and anyone else) verifies Vault's certificate with: VAULT_CACERT.
            self.exports["vaultCaCertificate"] = self.ca_certificate
        self.register_outputs(
            {
                "address": self.address,
                "caCertificate": self.ca_certificate,
                "jenkinsRoleId": self.jenkins_role_id,
                "jenkinsSecretId": self.jenkins_secret_id,
            }
        )

    def _private_ca(
        self, prefix: str, name: str, private_ip: str
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]]:
        """A CA of this stack's own and a server certificate it signs for ``name``, the private IP and
        loopback: (CA certificate, server certificate, server key), the key a secret."""
        options = pulumi.ResourceOptions(parent=self)
        dns_names, ip_addresses = certificate_names(name, private_ip)
        ca_key = tls.PrivateKey(f"{prefix}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=options)
        ca = tls.SelfSignedCert(
            f"{prefix}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"Samarth Vault CA ({pulumi.get_stack()})", organization="Samarth"),
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=options,
        )
        key = tls.PrivateKey(f"{prefix}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=options)
        request = tls.CertRequest(
            f"{prefix}-tls-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=name, organization="Samarth"),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            opts=options,
        )
        certificate = tls.LocallySignedCert(
            f"{prefix}-tls-certificate",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=CERTIFICATE_VALIDITY_HOURS,
            early_renewal_hours=CERTIFICATE_EARLY_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=options,
        )
        return ca.cert_pem, certificate.cert_pem, pulumi.Output.secret(key.private_key_pem)

    def _vault_options(self) -> pulumi.ResourceOptions:
        """Every Vault resource waits for the unseal: before it, Vault answers nothing."""
        return pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.unseal])

    def publish(self, book: CredentialBook) -> list[vault.kv.SecretV2]:
        """One secret per service and area at ``kv/samarth/<service>`` (the path layout Jenkins jobs read)
        or ``kv/platform/<service>`` (operators only). A path that moved from ``samarth/`` to ``platform/``
        keeps its resource (an alias from the old name): Pulumi replaces it, writing the new path."""
        def secret_json(values: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
            return pulumi.Output.secret(pulumi.Output.json_dumps(values))

        entries = book.close()
        secrets = []
        for path, values in entries.items():
            area, _, service = path.partition("/")
            moved = f"{APPLICATIONS}/{service}"
            aliases = [pulumi.Alias(name=self._secret_name(moved))] if area == PLATFORM and moved not in entries else []
            secrets.append(
                vault.kv.SecretV2(
                    self._secret_name(path),
                    mount=self.kv.path,
                    name=path,
                    data_json=secret_json(values),
                    opts=pulumi.ResourceOptions.merge(self._vault_options(), pulumi.ResourceOptions(aliases=aliases)),
                )
            )
        return secrets

    def _secret_name(self, path: str) -> str:
        """``vault-kv-samarth-<service>``: the resource of ``kv/<path>``."""
        return f"{self.name}-kv-{path.replace('/', '-')}"
