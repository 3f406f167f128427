"""The one way into a stack's configuration: validated config, its secrets and what the services
declare from it (``components/assembly.py``), after every check that spans sections (host keys pinned,
secrets stored as secrets, what the services declare against each other, capacity).

``__main__.py`` calls ``engine_deployment()``; the tools and the lab call ``load_deployment()`` with
the values they read from a stack file, so a stack they accept is one the program accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.shared.service import BackupSource, Declaration, Opening, Placement, Upstream

from . import assembly
from .capacity import check_capacity
from .config import (
    StackConfig,
    check_declarations,
    docker_hub_token,
    imported_vault_init,
    load_stack_config,
    offsite_secret_access_key,
    require_host_keys,
    ssh_private_key,
)


@dataclass(frozen=True)
class Deployment:
    config: StackConfig
    # sshPrivateKey; None: the SSH agent.
    ssh_private_key: Optional[str]
    # vaultInit: the init output of a Vault initialised outside this stack; None: the program initialises it.
    vault_init: Optional[str]
    # backupsOffsiteSecretAccessKey: the off-site S3 repository's secret key; None without one.
    offsite_secret_access_key: Optional[str]
    # dockerHubToken: the Docker Hub token the mirror pulls with (mirror.hubUsername's); None: anonymous.
    docker_hub_token: Optional[str]
    # What every service declares, by name, already checked against each other.
    declarations: Mapping[str, Declaration]
    # What every service places on the servers, already checked against their capacity.
    placements: tuple[Placement, ...]
    # What the routes may name, each route already checked to name one of them: for the edge.
    upstreams: tuple[Upstream, ...]
    # What the backups take from the other services.
    backup_sources: tuple[BackupSource, ...]
    # What the host firewall lets through, and the groups of servers its clients may name.
    openings: tuple[Opening, ...]
    client_groups: Mapping[str, tuple[str, ...]]


def load_deployment(
    project: str, stack: str, values: Mapping[str, Any], secret_keys: Iterable[str] = ()
) -> Deployment:
    """Validate the config the engine hands over (``"<project>:<key>" -> text``; ``secret_keys``: the keys
    set with ``--secret``) and everything that depends on more than one section. Raises ``ConfigError``
    naming the key path and what is wrong; nothing is registered before this returns."""
    config = load_stack_config(project, values)
    require_host_keys(config, stack)
    secrets = frozenset(secret_keys)
    declared = assembly.declarations(config)
    check_declarations(config, declared)
    placements = tuple(assembly.placements(declared))
    check_capacity(config, placements)
    return Deployment(
        config=config,
        ssh_private_key=ssh_private_key(project, values, secrets),
        vault_init=imported_vault_init(project, values, secrets),
        offsite_secret_access_key=offsite_secret_access_key(project, values, secrets, config),
        docker_hub_token=docker_hub_token(project, values, secrets, config),
        declarations=declared,
        placements=placements,
        upstreams=tuple(assembly.upstreams(declared)),
        backup_sources=tuple(assembly.backup_sources(config, declared)),
        openings=tuple(assembly.openings(declared)),
        client_groups=assembly.groups(declared),
    )


def engine_deployment() -> Deployment:
    """``load_deployment`` for this program run, with the config the engine passed it."""
    values, secret_keys = _engine_values()
    return load_deployment(pulumi.get_project(), pulumi.get_stack(), values, secret_keys)


def _engine_values() -> tuple[dict[str, Any], frozenset[str]]:
    """Every config value the engine passed, and which of them are secret.

    The SDK's only adapter into its private config state: ``pulumi.Config`` reads one key at a time by
    name, but validation must see every key (an unknown key is a typo to report) and know which were
    set as secrets (a private key in plaintext is refused). The language host passes config either in
    the environment (``get_config_env``) or through the run context (``CONFIG``/``_SECRET_KEYS``, which
    is also where the mocks put it), so both are read.
    """
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = frozenset(runtime_config._SECRET_KEYS.get()) | frozenset(runtime_config.get_config_secret_keys_env())
    return values, secret_keys
