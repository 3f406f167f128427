"""Backups with restic: an agent per server, a repository on another server, timers, credentials in Vault.

How each kind of backup is taken is data (``catalogue.py``); which targets exist is the ``BackupSource`` list every
service declares, gathered by ``components/assembly.py`` and handed in by ``__main__.py``. Per server with
targets this component:

- generates the repository password (pulumi-random) and the repository's credentials: db1, db2 and
  swarm-master keep theirs in MinIO on the application server (an S3 user allowed only its prefix of
  the ``samarth-backups`` bucket); the application server keeps its in an SFTP repository on
  ``backups.applicationRepositoryOn`` (a system user confined by sshd to internal-sftp in a chroot,
  from its IP only, with a key created on the application server), so nothing stays on the disk it
  protects;
- runs ``backup-install.sh``: restic copied out of the pinned image (``versions.restic``), the credentials
  from stdin into root-only files, the agent (``backup-agent.sh``) as ``samarth-backup`` and
  ``samarth-restore``, one systemd timer per target and a daily prune;
- with ``backups.offsite``, a second repository outside the six servers per server: its own generated
  password, the S3 keys from config or, for SFTP, the server's own key (made on the server; its public
  half is an output for the operator to install there); the agent copies every complete run to it;
- publishes every repository, password and key to ``kv/platform/backups`` (``CredentialBook``), which
  Jenkins' policy does not read.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_command as command
import pulumi_minio as minio
import pulumi_random as random
import pulumi_vault as vault

from components.platform.host.component import Host
from components.platform.host.containers import pinned_image
from components.platform.host.settings import Server
from components.shared.model import ServerName, server_name
from components.shared.publishing import CredentialBook
from components.shared.service import PLATFORM, BackupSource
from components.shared.shell import render

from .settings import Backups as BackupSettings
from .settings import OffsiteRepository, by_server, repository_gib, repository_server

BUCKET = "samarth-backups"
PRUNE_SCHEDULE = "daily"
SFTP_USER = "samarth-backup"
SFTP_ROOT = "/srv/samarth-backups"
SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_DROP_IN_DIR = "/etc/ssh/sshd_config.d"
SNAPSHOT_POLICY = "backup-raft-snapshot"
SNAPSHOT_ROLE = "backup-raft-snapshot"
# Published values that are credentials; repositories, user names and the role id stay readable.
SECRET_KEYS = ("_RESTIC_PASSWORD", "_AWS_SECRET_ACCESS_KEY")
# Installer credentials published to Vault as they are; the repository passwords follow the install.
PUBLISHED = ("RESTIC_REPOSITORY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The rclone remote the agents reach the off-site repository through (RCLONE_CONFIG_<NAME>_* variables).
OFFSITE_REMOTE = "samarthoffsite"


@dataclass(frozen=True)
class Layout:
    """Where the agent lives on a server. The credentials directory is root-only (0700, files 0600)."""

    config_dir: str = "/etc/samarth/backups"
    state_dir: str = "/var/lib/samarth-backups"
    restic: str = "/usr/local/lib/samarth/restic"
    rclone: str = "/usr/local/lib/samarth/rclone"
    sbin_dir: str = "/usr/local/sbin"
    unit_dir: str = "/etc/systemd/system"


LAYOUT = Layout()
CONFIG_DIR = LAYOUT.config_dir


def schedule_table(settings: BackupSettings, sources: Sequence[BackupSource], store_server: ServerName) -> list[str]:
    """Per server: each target, its method and schedule, and where its repository lives."""
    lines = []
    for server, placed in by_server(sources).items():
        where = repository_server(settings, server, store_server)
        lines.append(f"{server}: repository on {where} (~{repository_gib(settings, placed)} GiB), prune {PRUNE_SCHEDULE}")
        if settings.offsite is not None:
            lines.append(f"  off-site copy after each run: {offsite_repository(settings.offsite, server)}")
        for s in placed:
            lines.append(f"  {s.name:<32} {s.method:<10} {settings.schedule(s.method)}")
    return lines


def targets_text(settings: BackupSettings, sources: Sequence[BackupSource]) -> str:
    """The agent's target table: "name method schedule container detail" per line."""
    return "\n".join(f"{s.name} {s.method} {settings.schedule(s.method)} {s.container} {s.detail}" for s in sources)


def agent_script(settings: BackupSettings, server: str, sources: Sequence[BackupSource], layout: Layout = LAYOUT) -> str:
    keep, offsite_keep = settings.retention, settings.offsite_retention()
    return render(
        "backup-agent.sh",
        f"samarth-backup[{server}]",
        SERVER=server,
        CONFIG_DIR=layout.config_dir,
        STATE_DIR=layout.state_dir,
        RESTIC=layout.restic,
        RCLONE=layout.rclone,
        TARGETS=targets_text(settings, sources),
        KEEP_HOURLY=keep.hourly,
        KEEP_DAILY=keep.daily,
        KEEP_WEEKLY=keep.weekly,
        KEEP_MONTHLY=keep.monthly,
        OFFSITE_KEEP_HOURLY=offsite_keep.hourly,
        OFFSITE_KEEP_DAILY=offsite_keep.daily,
        OFFSITE_KEEP_WEEKLY=offsite_keep.weekly,
        OFFSITE_KEEP_MONTHLY=offsite_keep.monthly,
    )


def install_script(
    settings: BackupSettings,
    server: str,
    sources: Sequence[BackupSource],
    restic_image: str,
    layout: Layout = LAYOUT,
    rclone_image: str = "",
) -> str:
    """``rclone_image``: where rclone comes from (``versions.rclone``, with an off-site repository)."""
    return render(
        "backup-install.sh",
        f"backup-install[{server}]",
        SERVER=server,
        RESTIC_IMAGE=restic_image,
        RESTIC=layout.restic,
        RCLONE_IMAGE=rclone_image,
        RCLONE=layout.rclone,
        AGENT=agent_script(settings, server, sources, layout),
        CONFIG_DIR=layout.config_dir,
        STATE_DIR=layout.state_dir,
        SBIN_DIR=layout.sbin_dir,
        UNIT_DIR=layout.unit_dir,
        TARGETS=targets_text(settings, sources),
        RANDOM_DELAY=settings.random_delay,
        PRUNE_SCHEDULE=PRUNE_SCHEDULE,
    )


def snapshot_policy() -> str:
    """The only thing the backup token may do: read a raft snapshot."""
    return 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'


def s3_repository_url(endpoint: str, server: str) -> str:
    """restic's name for ``server``'s repository in MinIO (``endpoint``: host:port): its prefix of the bucket."""
    return f"s3:http://{endpoint}/{BUCKET}/{server}"


def sftp_repository_script(
    server: str,
    spec: Server,
    client: str,
    client_ip: str,
    client_public_key: str,
    sshd_config: str = SSHD_CONFIG,
    sshd_drop_in_dir: str = SSHD_DROP_IN_DIR,
    user: str = SFTP_USER,
    root: str = SFTP_ROOT,
) -> str:
    """backup-sftp-repository.sh for ``client``'s repository on ``server`` (``spec``)."""
    return render(
        "backup-sftp-repository.sh",
        f"backup-sftp-repository[{server}]",
        SERVER=server,
        SERVER_IP=spec.private_ip,
        SERVER_PORT=spec.ssh_port,
        CLIENT=client,
        CLIENT_IP=client_ip,
        CLIENT_PUBLIC_KEY=client_public_key.strip(),
        USER_NAME=user,
        REPOSITORY_ROOT=root,
        SSHD_CONFIG=sshd_config,
        SSHD_DROP_IN_DIR=sshd_drop_in_dir,
    )


def sftp_repository_url(spec: Server, client: str, user: str = SFTP_USER) -> str:
    """restic's name for ``client``'s repository on the server of ``spec``: a path inside the account's chroot."""
    return f"sftp:{user}@{spec.private_ip}:/{client}"


def sftp_command(spec: Server, user: str = SFTP_USER, config_dir: str = CONFIG_DIR) -> str:
    """How restic reaches the SFTP repository on the server of ``spec`` (``-o sftp.command``): the agent's
    key, only the pinned host key."""
    return (
        f"ssh -i {config_dir}/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={config_dir}/known_hosts -p {spec.ssh_port} {user}@{spec.private_ip} -s sftp"
    )


def offsite_repository(offsite: OffsiteRepository, server: str) -> str:
    """The off-site repository of ``server`` as restic names it natively (what an operator restores from
    on any machine, published to Vault)."""
    return f"{offsite.repository}/{server}"


def offsite_settings(offsite: OffsiteRepository, server: str, layout: Layout = LAYOUT) -> dict[str, str]:
    """repository.env lines for the off-site repository of ``server``, reached through rclone: the
    repository and the rclone remote, without its secret key (``RCLONE_CONFIG_..._SECRET_ACCESS_KEY``)."""
    remote = f"RCLONE_CONFIG_{OFFSITE_REMOTE.upper()}_"
    kind, rest = offsite.repository.split(":", 1)
    if kind == "s3":
        scheme, _, location = rest.partition("://")
        endpoint, _, path = location.partition("/")
        settings = {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENV_AUTH": "false",
            "ACCESS_KEY_ID": offsite.access_key_id or "",
            "REGION": offsite.region,
            "ENDPOINT": f"{scheme}://{endpoint}",
        }
    else:
        user, _, location = rest.partition("@")
        host, _, path = location.partition(":")
        settings = {
            "TYPE": "sftp",
            "HOST": host,
            "USER": user,
            "PORT": str(offsite.ssh_port),
            "KEY_FILE": f"{layout.config_dir}/ssh_key",
            "KNOWN_HOSTS_FILE": f"{layout.config_dir}/offsite_known_hosts",
            # Only the SFTP subsystem: the account on the off-site host may run no commands.
            "SHELL_TYPE": "none",
            "DISABLE_HASHCHECK": "true",
        }
    return {
        "SAMARTH_OFFSITE_REPOSITORY": f"rclone:{OFFSITE_REMOTE}:{path}/{server}",
        # The remote is all in these variables: no config file (rclone would log that it found none).
        "RCLONE_CONFIG": "/dev/null",
        **{remote + key: value for key, value in settings.items()},
    }


def offsite_known_hosts(offsite: OffsiteRepository) -> str:
    """The off-site SFTP host's pinned key as a known_hosts line (``[host]:port`` off port 22)."""
    host = offsite.repository.split("@", 1)[1].split(":", 1)[0]
    name = host if offsite.ssh_port == 22 else f"[{host}]:{offsite.ssh_port}"
    return f"{name} {' '.join((offsite.host_key or '').split()[:2])}"


def _env_lines(values: Mapping[str, str]) -> str:
    """``KEY=value`` lines the agent sources with ``sh``: each value shell-quoted."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


@dataclass(frozen=True)
class ObjectStore:
    """MinIO, as the storage component exposes it: its server, its provider and its S3 endpoint."""

    server: ServerName
    provider: minio.Provider
    endpoint: pulumi.Output[str]


@dataclass(frozen=True)
class VaultAccess:
    """What the Vault component exposes for the snapshot AppRole: its provider, the resource Vault is
    usable after (the unseal) and the AppRole mount."""

    provider: vault.Provider
    ready: pulumi.Resource
    approle_path: pulumi.Input[str]


@dataclass(frozen=True)
class BackupsArgs:
    settings: BackupSettings
    hosts: Mapping[ServerName, Host]
    # What every service declares it backs up (``Deployment.backup_sources``).
    sources: Sequence[BackupSource]
    # versions.restic, and versions.rclone for an off-site repository.
    restic_image: str
    rclone_image: Optional[str]
    store: ObjectStore
    vault: Optional[VaultAccess]
    book: CredentialBook
    # backupsOffsiteSecretAccessKey (secret config) with an S3 backups.offsite; else None.
    offsite_secret_access_key: Optional[pulumi.Input[str]] = None


class Backups(pulumi.ComponentResource):
    """The backup agents of every server with targets, their repositories and credentials."""

    repositories: dict[str, pulumi.Output[str]]
    # With an SFTP backups.offsite: each server's public key, for the operator to install on the off-site host.
    offsite_keys: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: BackupsArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:backups:Backups", name, None, opts)
        settings, hosts, store = args.settings, args.hosts, args.store
        grouped = by_server(args.sources)
        in_minio = pulumi.ResourceOptions(parent=self, provider=args.store.provider)
        bucket: Optional[minio.S3Bucket] = None
        if any(repository_server(settings, server, store.server) == store.server for server in grouped):
            bucket = minio.S3Bucket(f"{name}-bucket", bucket=BUCKET, acl="private", opts=in_minio)

        published: dict[str, pulumi.Input[str]] = {}
        self.repositories = {}
        self.offsite_keys = {}
        offsite = settings.offsite
        if offsite is not None and offsite.kind == "s3":
            published |= {
                "OFFSITE_AWS_ACCESS_KEY_ID": offsite.access_key_id or "",
                "OFFSITE_AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(args.offsite_secret_access_key or ""),
            }
        for server, sources in grouped.items():
            host = hosts[server_name(server)]
            key = server.replace("-", "_").upper()
            password = random.RandomPassword(
                f"{name}-{server}-repository-password", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            credentials: dict[str, pulumi.Input[str]] = {"RESTIC_PASSWORD": password.result}
            repository_host = hosts[repository_server(settings, server, store.server)]
            depends: list[pulumi.Resource] = []
            public_key: Optional[pulumi.Output[str]] = None
            if bucket is not None and repository_host.name == store.server:
                repository = store.endpoint.apply(functools.partial(s3_repository_url, server=server))
                user_name, secret = self._s3_user(name, server, in_minio)
                credentials |= {"AWS_ACCESS_KEY_ID": user_name, "AWS_SECRET_ACCESS_KEY": secret}
            else:
                public_key = self._ssh_key(name, server, host)
                repository, sftp_command, known_hosts, depends = self._sftp_repository(name, server, host, repository_host, public_key)
                credentials |= {"SAMARTH_SFTP_COMMAND": sftp_command, "known_hosts": known_hosts}
            credentials["RESTIC_REPOSITORY"] = repository
            if args.vault is not None and any(s.method == "vault-raft" for s in sources):
                credentials |= self._snapshot_approle(name, args.vault)
            if offsite is not None:
                offsite_password = random.RandomPassword(
                    f"{name}-{server}-offsite-password", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
                )
                credentials |= {"offsite_password": offsite_password.result, **offsite_settings(offsite, server)}
                depends.append(pinned_image(host, self, f"{name}-{server}-rclone-image", args.rclone_image or ""))
                if offsite.kind == "s3":
                    secret_key = f"RCLONE_CONFIG_{OFFSITE_REMOTE.upper()}_SECRET_ACCESS_KEY"
                    credentials[secret_key] = pulumi.Output.secret(args.offsite_secret_access_key or "")
                else:
                    credentials["offsite_known_hosts"] = offsite_known_hosts(offsite)
                    self.offsite_keys[server] = (public_key or self._ssh_key(name, server, host)).apply(str.strip)
                published[f"{key}_OFFSITE_RESTIC_REPOSITORY"] = offsite_repository(offsite, server)

            text: pulumi.Output[str] = pulumi.Output.all(**credentials).apply(credential_text)
            stdin: pulumi.Output[str] = pulumi.Output.secret(text)
            install = command.remote.Command(
                f"{name}-{server}-install",
                connection=host.connection,
                create=install_script(settings, server, sources, args.restic_image, rclone_image=(args.rclone_image or "") if offsite else ""),
                stdin=stdin,
                # The credentials are in stdin, which the provider does not diff: re-run when they change.
                triggers=[stdin],
                logging=command.remote.Logging.STDERR,
                add_previous_output_in_env=False,
                opts=host.command_options(
                    self, depends_on=[pinned_image(host, self, f"{name}-{server}-restic-image", args.restic_image), *depends]
                ),
            )
            self.repositories[server] = repository
            # The AppRole's secret id stays out: Vault issues it, and a restored Vault can issue another.
            published |= {f"{key}_{k}": v for k, v in credentials.items() if k in PUBLISHED}
            # Vault, the operators' copy, takes a repository password only once the installer made it open
            # the repository (a new one becomes a key first): a failed rotation leaves the one that opens it.
            published[f"{key}_RESTIC_PASSWORD"] = _after(install, password.result)
            if offsite is not None:
                published[f"{key}_OFFSITE_RESTIC_PASSWORD"] = _after(install, credentials["offsite_password"])
        # The operators' copy, out of Jenkins' reach: the platform's area (docs/vault.md).
        args.book.add(
            "backups",
            {k: pulumi.Output.secret(v) if k.endswith(SECRET_KEYS) else v for k, v in published.items()},
            area=PLATFORM,
        )
        self.exports: dict[str, object] = {"backupRepositories": self.repositories}
        if self.offsite_keys:
            # To install on the off-site SFTP host, one authorized_keys line per server (docs/backups.md, "Off-site copy").
            self.exports["backupOffsiteKeys"] = self.offsite_keys
        self.register_outputs({"repositories": self.repositories, "offsiteKeys": self.offsite_keys})

    def _s3_user(
        self, name: str, server: str, in_minio: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A MinIO user that can read and write only ``samarth-backups/<server>/``."""
        policy = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{BUCKET}"]},
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{BUCKET}"],
                        "Condition": {"StringLike": {"s3:prefix": [f"{server}/*", server]}},
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        "Resource": [f"arn:aws:s3:::{BUCKET}/{server}/*"],
                    },
                ],
            }
        )
        user_policy = minio.IamPolicy(f"{name}-{server}-policy", name=f"{BUCKET}-{server}", policy=policy, opts=in_minio)
        secret = random.RandomPassword(f"{name}-{server}-s3-secret", length=40, special=False, opts=pulumi.ResourceOptions(parent=self))
        user = minio.IamUser(f"{name}-{server}-user", name=f"{BUCKET}-{server}", secret=secret.result, opts=in_minio)
        minio.IamUserPolicyAttachment(f"{name}-{server}-attachment", user_name=user.name, policy_name=user_policy.name, opts=in_minio)
        return user.name, pulumi.Output.secret(secret.result)

    def _ssh_key(self, name: str, server: str, host: Host) -> pulumi.Output[str]:
        """The public half of the SSH key the agent of ``server`` logs in to SFTP repositories with; made
        on ``server``, its private half never leaves it."""
        key = command.remote.Command(
            f"{name}-{server}-ssh-key",
            connection=host.connection,
            create=render("backup-ssh-key.sh", f"backup-ssh-key[{server}]", SERVER=server, CONFIG_DIR=CONFIG_DIR),
            opts=host.command_options(self),
        )
        return key.stdout

    def _sftp_repository(
        self, name: str, server: str, host: Host, repository_host: Host, client_key: pulumi.Output[str]
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str], list[pulumi.Resource]]:
        """An SFTP repository for ``server`` on ``repository_host``, reached with ``client_key``."""
        account = command.remote.Command(
            f"{name}-{server}-sftp-repository",
            connection=repository_host.connection,
            create=client_key.apply(
                lambda public_key: sftp_repository_script(repository_host.name, repository_host.spec, server, host.spec.private_ip, public_key)
            ),
            opts=repository_host.command_options(self),
        )
        return (
            pulumi.Output.from_input(sftp_repository_url(repository_host.spec, server)),
            pulumi.Output.from_input(sftp_command(repository_host.spec)),
            account.stdout.apply(lambda line: line.strip()),
            [account],
        )

    def _snapshot_approle(self, name: str, access: VaultAccess) -> dict[str, pulumi.Input[str]]:
        """An AppRole whose tokens can only read a raft snapshot, and a secret id for the agent."""
        in_vault = pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=[access.ready])
        policy = vault.Policy(f"{name}-vault-policy", name=SNAPSHOT_POLICY, policy=snapshot_policy(), opts=in_vault)
        role = vault.approle.AuthBackendRole(
            f"{name}-vault-role",
            backend=access.approle_path,
            role_name=SNAPSHOT_ROLE,
            token_policies=[policy.name],
            token_ttl=600,
            token_max_ttl=1800,
            opts=in_vault,
        )
        secret_id = vault.approle.AuthBackendRoleSecretId(
            f"{name}-vault-secret-id", backend=access.approle_path, role_name=role.role_name, opts=in_vault
        )
        return {"role_id": role.role_id, "secret_id": pulumi.Output.secret(secret_id.secret_id)}


def _after(resource: pulumi.CustomResource, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """``value``, once ``resource`` is created or updated."""
    return pulumi.Output.all(resource.id, value).apply(lambda values: str(values[1]))


def credential_text(values: Mapping[str, Any]) -> str:
    """The installer's stdin: the password, the repository's environment (shell-quoted), then the Vault
    AppRole, the SFTP repository's known_hosts line and the off-site password and known_hosts line when
    there are any."""
    env = {k: v for k, v in values.items() if k.isupper() and k != "RESTIC_PASSWORD"}
    lines = [f"RESTIC_PASSWORD={values['RESTIC_PASSWORD']}\n", _env_lines(env)]
    lines += [f"{k}={values[k]}\n" for k in ("role_id", "secret_id", "known_hosts", "offsite_password", "offsite_known_hosts") if k in values]
    return "".join(lines)
