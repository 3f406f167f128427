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
import dataclasses
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

from components.assembly import declarations, services
from tools.offline import PROJECT, read_stack_values, stack_deployment, stack_file

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"

# The composition: what it is made of, and why it sits above the groups.
COMPOSITION = {
    "components.config": "the stack config: every section's model composed, the checks that span sections, the loaders",
    "components.capacity": "the placements every service declares against the servers' declared size",
    "components.assembly": "the lists of services every gathering loops over",
    "components.deployment": "the one way into a stack's configuration",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False, typing_only: bool = False) -> set[str]:
    """The dotted names of the components modules ``source`` (the text of ``module``) imports; ``from
    package import name`` counts as the module ``package.name`` when that is a module, else ``package``.
    ``typing_only``: those imported under ``if TYPE_CHECKING:`` (for annotations), else the others."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    for_typing = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if (id(node) in for_typing) != typing_only:
            continue
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
    """Whether ``importer`` may import ``imported`` to run (an annotation's import is not checked here)."""
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
        return True
    # The Host every component is handed, its settings and its container rules.
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
        "components.services.swarm.settings",
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
    assert top == set(COMPOSITION)
    services = {group(name)[1] for name in found if group(name)[0] == "services"} - {"components.services"}
    assert services == {
        f"components.services.{name}"
        for name in ("databases", "vault", "storage", "registry", "mirror", "observability", "edge", "swarm", "backups")
    }
    for package in services | {"components.platform.host", "components.platform.firewall"}:
        assert f"{package}.component" in found, package


def test_each_script_is_beside_the_component_that_runs_it() -> None:
    scripts = sorted(path for path in COMPONENTS.rglob("*.sh"))
    assert scripts
    for path in scripts:
        assert path.parent.name == "scripts", path
        owner = path.parent.parent
        assert owner == COMPONENTS / "shared" or (owner / "component.py").is_file(), path


def test_below_the_composition_the_stack_config_is_imported_for_annotations_only() -> None:
    """A service declares from the ``StackConfig`` it is handed: its module names the type, it never loads
    the composition (which loads every service's settings)."""
    typed = {
        importer: imported_modules(source, importer, is_package, typing_only=True)
        for importer, (source, is_package) in modules().items()
        if group(importer)[0] != "composition"
    }
    assert {imported for found in typed.values() for imported in found} == {"components.config"}
    assert "components.shared.service" in {importer for importer, found in typed.items() if found}


def test_every_service_is_listed() -> None:
    """Every service package's SERVICE (and any platform piece's) is in assembly's list, so what it declares
    is checked and gathered."""
    listed = {service.name: service for service in services()}
    declaring = []
    for path in sorted(COMPONENTS.glob("*/*/settings.py")):
        service = getattr(importlib.import_module(module_name(path)), "SERVICE", None)
        if service is None:
            assert path.parent.parent.name == "platform", f"{path}: a service's settings declare its SERVICE"
            continue
        declaring.append(service)
        assert listed.get(service.name) is service, path
    assert len(declaring) == len(listed)


def test_loading_a_stack_imports_no_pulumi_sdk() -> None:
    """Validating a stack file loads no provider SDK: every section's model is Pulumi-free."""
    values = json.dumps(read_stack_values(stack_file("prod"))[0])
    program = (
        "import json, sys\n"
        "from components.config import load_stack_config\n"
        f"load_stack_config({PROJECT!r}, json.loads(sys.stdin.read()))\n"
        "from pathlib import Path\n"
        "import importlib\n"
        "for path in sorted(Path('components').glob('*/*/settings.py')):\n"
        "    importlib.import_module('.'.join(path.with_suffix('').parts))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, input=values, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def names_the_stack_config(annotation: object) -> bool:
    """Whether a field's annotation (text, as ``from __future__ import annotations`` keeps it) names
    ``StackConfig``, alone or inside another type."""
    return re.search(r"\bStackConfig\b", annotation if isinstance(annotation, str) else repr(annotation)) is not None


def test_no_components_args_hold_the_whole_stack_config() -> None:
    """A component is handed its own settings and the outputs it consumes, never the whole StackConfig."""
    found = []
    for name in modules():
        for attribute, value in vars(importlib.import_module(name)).items():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name and attribute.endswith("Args"):
                found.append(attribute)
                assert not [field for field, hint in value.__annotations__.items() if names_the_stack_config(hint)], value
    assert len(found) >= 10, found
    assert names_the_stack_config("Optional[Mapping[str, StackConfig]]") and not names_the_stack_config("StackConfigs")


def service_names() -> set[str]:
    """Every name a service (a package under components/services/) goes by: its own, the upstreams it
    offers, the Vault paths it publishes."""
    declared = declarations(stack_deployment("prod").config)
    return {
        name
        for service in services()
        if service.declare.__module__.startswith("components.services.")
        for name in (
            service.name,
            *(upstream.name for upstream in declared[service.name].upstreams),
            *(credentials.path for credentials in declared[service.name].credentials),
        )
    }


def test_no_shared_or_platform_module_names_a_service_or_imports_one() -> None:
    """What is shared knows no service: it neither compares with a service's name nor loads its module,
    so adding or renaming a service changes nothing in them."""
    names = service_names()
    assert {"vault", "minio", "registry", "sentry", "swarm", "backups", "doc-generator"} <= names
    problems = []
    for module, (source, is_package) in modules().items():
        if group(module)[0] not in ("shared", "platform") and module not in COMPOSITION:
            continue
        literals = {
            node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        problems += [f"{module} names the service {name!r}" for name in sorted(literals & names)]
        imported = imported_modules(source, module, is_package) | imported_modules(source, module, is_package, typing_only=True)
        if group(module)[0] != "composition":
            problems += [f"{module} imports {name}" for name in sorted(imported) if group(name)[0] == "services"]
    assert problems == []


def test_the_literal_reader_would_see_a_branch_on_a_service() -> None:
    source = 'def f(route):\n    return route.upstream == "vault"\n'
    literals = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)}
    assert literals & service_names() == {"vault"}
