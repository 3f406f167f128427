"""Components meet only through their contracts: no service component imports another.

A service component is a module under components/ that defines a ``pulumi.ComponentResource``. It
may import the shared concerns below and its own sub-parts; what one component needs from another
(placements, upstreams, backup sources, credentials, outputs) is handed over by ``components/assembly.py``
(through ``load_deployment``) and by ``__main__.py``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from components.assembly import stack_upstreams
from tools.offline import stack_deployment

COMPONENTS = Path(__file__).resolve().parent.parent / "components"

# Shared concerns any module may import, and why they are not components of their own.
SHARED = {
    "config": "the validated stack config every component is built from",
    "ports": "fixed ports and the contracts a component offers about its listeners (Opening, Upstream)",
    "capacity": "Placement, the contract a component declares its memory and disk in",
    "publishing": "CredentialBook, the hand-over of credentials to Vault",
    "shell": "renders a remote script from components/scripts/",
    "containers": "how a service container, its image and its data volume are declared",
    "host": "Host, the server a component is given to place its resources on (a ComponentResource "
    "that __main__.py builds first and hands to every component)",
    "catalogue": "the backing services and their databases, as data",
    "backup_catalogue": "how each database engine is backed up, as data",
}
# Modules that are part of one other module, with no resources of their own: only their owner imports them.
SUB_PARTS = {
    "acme": ("edge", "renders the ACME client's install and renewal scripts that the Nginx component runs"),
    "systemd_time": ("config", "systemd's grammar of calendar events and time spans, which the timers' settings are checked against"),
}
# The modules that may import service components, and why.
ASSEMBLERS = {
    "assembly": "gathers what every component declares from config alone (placements, upstreams, backup sources)",
    "deployment": "the config entry point: its Deployment carries what assembly gathers (the backups' Source type)",
}


def imported_components(source: str) -> set[str]:
    """The modules of the components package that ``source`` (a module inside it) imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and node.module and node.module.split(".")[0] == "components"):
                inside = (node.module or "").split(".")[node.level == 0 :]
                if inside and inside[0]:
                    found.add(inside[0])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1] for alias in node.names if alias.name.startswith("components.")
            )
    return found


def _defines_component(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and base.attr == "ComponentResource":
                    return True
    return False


def _modules() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(COMPONENTS.glob("*.py")) if path.stem != "__init__"}


def test_the_import_reader_sees_every_form_of_import() -> None:
    source = (
        "from . import acme, shell\nfrom .vault import VaultServer\nimport components.registry\n"
        "from components.storage import Storage\nfrom components import swarm\nimport pulumi\nfrom .. import x\n"
    )
    assert imported_components(source) == {"acme", "shell", "vault", "registry", "storage", "swarm"}


def test_no_service_component_imports_another() -> None:
    modules = _modules()
    services = {name for name, source in modules.items() if _defines_component(source)} - set(SHARED)
    assert {"edge", "vault", "registry", "storage", "observability", "data", "swarm", "backups", "firewall"} <= services
    problems = []
    for name, source in modules.items():
        for imported in sorted(imported_components(source) - {name}):
            if imported in SHARED:
                continue
            owner = SUB_PARTS.get(imported, (None, ""))[0]
            if owner == name:
                continue
            if imported in services and name in ASSEMBLERS:
                continue
            if imported == "assembly" and name == "deployment":
                continue
            problems.append(f"components/{name}.py imports components/{imported}.py")
    assert problems == []


def test_the_allow_lists_name_real_modules_that_are_no_components() -> None:
    modules = _modules()
    for name in (*SHARED, *SUB_PARTS, *ASSEMBLERS):
        assert name in modules, name
    for name in (*SUB_PARTS, *ASSEMBLERS):
        assert not _defines_component(modules[name]), name
    # Every shared concern is used by more than one module, or it would belong to that one.
    users = {name: {m for m, source in modules.items() if name in imported_components(source)} for name in SHARED}
    assert {name: len(using) for name, using in users.items() if len(using) < 2} == {}


def test_assembly_gathers_every_components_upstreams() -> None:
    """A module that declares ``upstreams(config)`` is gathered: a route to it would otherwise be refused."""
    config = stack_deployment("prod").config
    declared = []
    for name in _modules():
        upstreams = getattr(importlib.import_module(f"components.{name}"), "upstreams", None)
        if callable(upstreams) and name != "assembly":
            declared.extend(upstreams(config))
    gathered = stack_upstreams(config)
    assert sorted(map(repr, gathered)) == sorted(map(repr, declared))
    names = [upstream.name for upstream in gathered]
    assert len(names) == len(set(names)), names
