"""The folders show the design, and the imports keep to it (read with ast, never by running the code):

- ``components/shared/``: helpers with no service knowledge; they import only each other.
- ``components/platform/<piece>/``: what every server has (the host, the firewall); shared helpers and
  their own package only.
- ``components/services/<name>/``: one folder per service; shared helpers, the host it is given
  (``platform/host``) and its own package. No service imports another: what one needs from another is
  declared and handed over by ``components/assembly.py`` (through ``load_deployment``) and ``__main__.py``.
- the composition at the top of ``components/``: ``config`` (the sections), ``capacity``, ``assembly``
  (the lists of services) and ``deployment`` (the one way in).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from components.assembly import stack_upstreams
from tools.offline import stack_deployment

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"

# The composition: what it is made of, and why it sits above the groups.
COMPOSITION = {
    "components.config": "the stack config: every section's model composed, the checks that span sections, the loaders",
    "components.capacity": "the placements every service declares against the servers' declared size",
    "components.assembly": "the lists of services every gathering loops over",
    "components.deployment": "the one way into a stack's configuration",
}
# Former module names kept for files another change is rewriting meanwhile (lab/backup_drill.py, the
# backup lab tests); nothing else imports them.
FORMER_NAMES = {"components.backups", "components.ports"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """The dotted names of the components modules ``source`` (the text of ``module``) imports; ``from
    package import name`` counts as the module ``package.name`` when that is a module, else ``package``."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "components" or name.startswith("components.")}


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def modules() -> dict[str, tuple[str, bool]]:
    """Every module under components/: its text, and whether it is a package's ``__init__``."""
    return {module_name(path): (path.read_text(), path.name == "__init__.py") for path in sorted(COMPONENTS.rglob("*.py"))}


def group(module: str) -> tuple[str, str]:
    """(group, package): ``("services", "components.services.vault")`` and so on; the composition is
    ``("composition", "components")``."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("platform", "services"):
        return parts[1], ".".join(parts[:3])
    if len(parts) >= 2 and parts[1] == "shared":
        return "shared", "components.shared"
    return "composition", "components"


def allowed(importer: str, imported: str) -> bool:
    kind, package = group(importer)
    imported_kind, imported_package = group(imported)
    if imported in ("components", "components.shared", "components.platform", "components.services"):
        return True
    if imported_kind == "shared":
        return True
    if kind == "shared":
        return False
    if imported_package == package:
        return True
    if kind == "composition":
        return imported not in FORMER_NAMES
    if imported == "components.config" or imported == "components.capacity":
        # A component reads the validated config it is built from.
        return True
    # The Host every component is handed.
    return imported_package == "components.platform.host"


def test_the_import_reader_sees_every_form_of_import() -> None:
    source = (
        "from . import acme\nfrom .component import Nginx\nimport components.config\n"
        "from components.services.vault import component as vault\nfrom ..swarm import settings as swarm\nimport pulumi\n"
    )
    assert imported_modules(source, "components.services.edge.component") == {
        "components.services.edge.acme",
        "components.services.edge.component",
        "components.config",
        "components.services.vault.component",
        "components.services.swarm",
    }


def test_every_import_keeps_to_the_layers() -> None:
    found = modules()
    problems = [
        f"{importer} imports {imported}"
        for importer, (source, is_package) in found.items()
        for imported in sorted(imported_modules(source, importer, is_package))
        if not allowed(importer, imported)
    ]
    assert problems == []


def test_the_groups_hold_what_their_names_say() -> None:
    found = modules()
    top = {name for name in found if group(name)[0] == "composition"} - {"components"}
    assert top == set(COMPOSITION) | FORMER_NAMES
    services = {group(name)[1] for name in found if group(name)[0] == "services"} - {"components.services"}
    assert services == {
        f"components.services.{name}"
        for name in ("databases", "vault", "storage", "registry", "observability", "edge", "swarm", "backups")
    }
    for package in services | {"components.platform.host", "components.platform.firewall"}:
        assert f"{package}.component" in found, package
    for name in FORMER_NAMES:
        users = [
            path
            for path in ROOT.rglob("*.py")
            if "venv" not in path.parts and name in imported_modules(path.read_text(), module_name(path))
        ]
        assert {str(path.relative_to(ROOT)) for path in users} <= {
            "lab/backup_drill.py",
            "tests/test_backups_lab.py",
            "tests/test_restores_lab.py",
        }, name


def test_each_script_is_beside_the_component_that_runs_it() -> None:
    scripts = sorted(path for path in COMPONENTS.rglob("*.sh"))
    assert scripts
    for path in scripts:
        assert path.parent.name == "scripts", path
        owner = path.parent.parent
        assert owner == COMPONENTS / "shared" or (owner / "component.py").is_file(), path


def test_assembly_gathers_every_components_upstreams() -> None:
    """A module that declares ``upstreams(config)`` is gathered: a route to it would otherwise be refused."""
    config = stack_deployment("prod").config
    declared = []
    for name in modules():
        if name == "components.assembly" or not name.endswith(".component"):
            continue
        upstreams = getattr(importlib.import_module(name), "upstreams", None)
        if callable(upstreams):
            declared.extend(upstreams(config))
    gathered = stack_upstreams(config)
    assert sorted(map(repr, gathered)) == sorted(map(repr, declared))
    names = [upstream.name for upstream in gathered]
    assert len(names) == len(set(names)), names
