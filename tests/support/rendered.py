"""Reading what the program renders: a remote script's header values (components.shell.render), and
Nginx's config file as the program renders it for a stack."""

from __future__ import annotations

import re
import shlex

from components.assembly import stack_upstreams
from components.config import StackConfig
from components.services.edge import component as edge
from components.shared.model import SWARM_MANAGER

_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=", re.S)


def script_values(script: str) -> dict[str, str]:
    """The ``NAME=value`` assignments of a rendered script's header, unquoted (the header ends at the
    prelude's first command; a value may itself be a rendered script)."""
    words = shlex.shlex(script, posix=True)
    words.whitespace_split = True
    values: dict[str, str] = {}
    for word in words:
        if not _ASSIGNMENT.match(word):
            break
        name, value = word.split("=", 1)
        values[name] = value
    return values


def nginx_config(config: StackConfig, application_ip: str, swarm_ip: str) -> str:
    """Nginx's config file for ``config`` with the upstreams its components declare, as ``__main__.py``
    hands them to the edge, on these private IPs."""
    addresses: dict[str, str] = {"application": application_ip, SWARM_MANAGER: swarm_ip}
    return edge.render_config(config.edge.tls, config.edge_routes(), stack_upstreams(config), addresses)
