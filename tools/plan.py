"""What ``pulumi up`` would build, per server, without the CLI, servers or credentials.

``python -m tools.plan --stack prod`` runs the program under mocks (``tools.offline.run_program``),
places every Docker object and remote command on the server whose Docker provider or SSH connection
it uses, and prints containers, swarm objects, images, bound addresses and ports, volumes, commands
and where each generated secret is published in Vault (paths and keys, never values). It writes a
Mermaid diagram of servers, services and their wiring: prod's to ``docs/topology-prod.mmd`` (committed,
and ``--write-readme`` also puts it between the README's topology markers), every other stack's to
``build/topology-<stack>.mmd``, which git ignores.

Wiring is read from the program itself: a service is drawn as using another when an address and
port the other binds appear in its inputs (environment, configuration files, routes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Optional

import pulumi

from components import assembly
from components.config import StackConfig
from components.platform.firewall import component as firewall
from components.services.backups import component as backups
from components.services.backups import settings as backup_settings
from components.services.mirror.settings import mirror_url
from components.shared.model import DOCKER_HUB, ServerName, image_registry, server_name
from tools import deploy_graph, upstreams
from tools.offline import (
    COMMAND,
    CONTAINER,
    COPY_TO_REMOTE,
    HOST,
    IMAGE,
    NETWORK,
    PASSWORD,
    ROOT,
    SECRET_V2,
    SERVICE,
    VOLUME,
    ProgramRun,
    Registration,
    known_stack_file,
    reveal,
    run_program,
    stack_deployment,
)

# Listed under their server, in this order; other resources on a server are counted, not detailed.
SHOWN = (CONTAINER, SERVICE, "docker:index/serviceConfig:ServiceConfig", "docker:index/secret:Secret", NETWORK, VOLUME, IMAGE, COMMAND, COPY_TO_REMOTE)
README_START = "<!-- topology:start -->"
README_END = "<!-- topology:end -->"
ANY_ADDRESS = "0.0.0.0"


# The README and docs/ describe prod; any other stack's diagram is a working file.
DOCUMENTED_STACK = "prod"


def diagram_path(stack: str, root: Path = ROOT) -> Path:
    folder = root / "docs" if stack == DOCUMENTED_STACK else root / "build"
    return folder / f"topology-{stack}.mmd"


# ----------------------------------------------------------------------------------------------
# Placing registrations on servers


@dataclass
class Topology:
    run: ProgramRun
    config: StackConfig
    server_of: dict[str, ServerName] = field(default_factory=dict)  # urn -> server name

    @property
    def servers(self) -> list[ServerName]:
        return list(self.config.servers)

    def on(self, server: str) -> list[Registration]:
        return [r for r in self.run.registrations if self.server_of.get(r.urn) == server]

    def component_of(self, registration: Registration) -> Optional[Registration]:
        """The nearest ``samarth:*`` component above ``registration`` that is not a Host."""
        for ancestor in self.run.ancestors(registration):
            if ancestor.type.startswith("samarth:") and ancestor.type != HOST:
                return ancestor
        return None


def _connection_key(connection: Any) -> Optional[tuple[Any, ...]]:
    if not isinstance(connection, dict) or "host" not in connection:
        return None
    return (connection.get("host"), connection.get("port"), connection.get("user"), json.dumps(connection.get("proxy"), sort_keys=True, default=str))


def place(run: ProgramRun, config: StackConfig) -> Topology:
    """Map every registration to the server it acts on, if any."""
    topology = Topology(run=run, config=config)
    hosts = {r.urn: server_name(r.name) for r in run.of_type(HOST)}
    connections: dict[tuple[Any, ...], ServerName] = {}
    docker_hosts: dict[Any, ServerName] = {}
    for registration in run.registrations:
        host = _host_ancestor(run, registration, hosts)
        if host is not None:
            topology.server_of[registration.urn] = host
            key = _connection_key(registration.plain_inputs.get("connection"))
            if key is not None:
                connections[key] = host
            if registration.type == "pulumi:providers:docker":
                docker_hosts[registration.inputs.get("host")] = host
    # A Docker provider made outside a Host (say, for the swarm manager) is placed by its address.
    for provider in run.of_type("pulumi:providers:docker"):
        if provider.urn not in topology.server_of and provider.inputs.get("host") in docker_hosts:
            topology.server_of[provider.urn] = docker_hosts[provider.inputs.get("host")]
    for registration in run.registrations:
        if registration.urn in topology.server_of:
            continue
        its_provider = run.provider_of(registration)
        if its_provider is not None and its_provider.urn in topology.server_of:
            topology.server_of[registration.urn] = topology.server_of[its_provider.urn]
            continue
        key = _connection_key(registration.plain_inputs.get("connection"))
        if key in connections:
            topology.server_of[registration.urn] = connections[key]
    # A component belongs to a server when everything placed beneath it is on that one server.
    for registration in run.registrations:
        if registration.custom or registration.urn in topology.server_of:
            continue
        below = {topology.server_of[r.urn] for r in run.under(registration) if r.urn in topology.server_of}
        if len(below) == 1:
            topology.server_of[registration.urn] = below.pop()
    return topology


def _host_ancestor(run: ProgramRun, registration: Registration, hosts: dict[str, ServerName]) -> Optional[ServerName]:
    if registration.urn in hosts:
        return hosts[registration.urn]
    for ancestor in run.ancestors(registration):
        if ancestor.urn in hosts:
            return hosts[ancestor.urn]
    return None


# ----------------------------------------------------------------------------------------------
# What each resource binds, runs and uses


@dataclass(frozen=True)
class Binding:
    address: str
    port: int
    # None when the binding is read from the service's own configuration rather than a port mapping.
    target: Optional[int] = None
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" + (f"->{self.target}/{self.protocol}" if self.target else "")


@cache
def _address_pattern(addresses: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so that 10.0.0.10 is not read as 10.0.0.1 followed by a digit.
    alternatives = "|".join(re.escape(a) for a in sorted(addresses, key=len, reverse=True))
    return re.compile(rf"({alternatives}):([0-9]{{1,5}})(?![0-9])")


def address_ports(text: str, addresses: Iterable[str]) -> set[tuple[str, int]]:
    """Every ``address:port`` written in ``text`` for one of ``addresses``, not inside a longer address."""
    found = set()
    for match in _address_pattern(tuple(sorted(set(addresses)))).finditer(text):
        start = match.start()
        if start == 0 or text[start - 1] not in "0123456789.":
            found.add((match.group(1), int(match.group(2))))
    return found


def mentioned_bindings(topology: Topology, server: ServerName, texts: Iterable[str], loopback: bool) -> list[Binding]:
    """``<this server's address>:<port>`` as written in a service's configuration or install script:
    all there is to know about what a host-network container or a compose installation binds."""
    addresses = _addresses(topology, server)
    wanted = addresses if loopback else addresses[:-1]
    mentioned = address_ports("\n".join(texts), wanted)
    return [Binding(address, port) for address in wanted for port in sorted(p for a, p in mentioned if a == address)]


def image_of(run: ProgramRun, registration: Registration) -> str:
    inputs = registration.plain_inputs
    if registration.type == SERVICE:
        return str(_dig(inputs, "taskSpec", "containerSpec", "image") or "?")
    images = [d for d in (run.by_urn.get(u) for u in registration.dependencies) if d is not None and d.type == IMAGE]
    for image in images:
        if inputs.get("image") and inputs.get("image") == image.outputs.get("imageId"):
            return str(image.plain_inputs.get("name"))
    if len(images) == 1:
        return str(images[0].plain_inputs.get("name"))
    return str(inputs.get("image") or "?")


def bindings(topology: Topology, registration: Registration) -> list[Binding]:
    inputs = registration.plain_inputs
    found: list[Binding] = []
    if registration.type == CONTAINER:
        if inputs.get("networkMode") == "host" and not inputs.get("ports"):
            # Host networking binds whatever the process is configured to listen on.
            server = topology.server_of.get(registration.urn)
            if server is not None:
                found += mentioned_bindings(topology, server, strings(inputs), loopback=True)
        else:
            for port in inputs.get("ports") or []:
                found.append(Binding(port.get("ip") or ANY_ADDRESS, int(port.get("external") or port["internal"]), int(port["internal"]), port.get("protocol") or "tcp"))
    elif registration.type == SERVICE:
        # Swarm's routing mesh publishes on every node's addresses (moby 26696).
        for port in _dig(inputs, "endpointSpec", "ports") or []:
            if port.get("publishedPort"):
                found.append(Binding(ANY_ADDRESS, int(port["publishedPort"]), int(port["targetPort"]), port.get("protocol") or "tcp"))
    return found


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, pulumi.StringAsset):
        yield value.text
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@dataclass(frozen=True)
class Publication:
    path: str
    keys: tuple[str, ...]
    values: dict[str, str]


def publications(run: ProgramRun) -> list[Publication]:
    found = []
    for secret in run.of_type(SECRET_V2):
        inputs = secret.plain_inputs
        data = inputs.get("dataJson")
        values = json.loads(data) if isinstance(data, str) and data else {}
        path = f"{inputs.get('mount') or '?'}/{inputs.get('name') or secret.name}"
        found.append(Publication(path=path, keys=tuple(sorted(values)), values={k: str(v) for k, v in values.items()}))
    return sorted(found, key=lambda p: p.path)


def generated_secrets(run: ProgramRun) -> dict[str, str]:
    """Generated value -> the name of the resource that generated it."""
    found = {}
    for password in run.of_type(PASSWORD):
        value = reveal(password.outputs.get("result"))
        if isinstance(value, str) and value:
            found[value] = password.name
    return found


def published_at(value: str, pubs: Iterable[Publication]) -> list[str]:
    return [f"{p.path} {k}" for p in pubs for k in p.keys if value in p.values[k]]


# ----------------------------------------------------------------------------------------------
# The printed plan


def describe(topology: Topology, registration: Registration, secrets: dict[str, str], pubs: list[Publication]) -> list[str]:
    run = topology.run
    inputs = registration.plain_inputs
    kind = registration.type.rsplit(":", 1)[-1].lower()
    name = inputs.get("name") or registration.name
    lines: list[str] = []
    if registration.type in (CONTAINER, SERVICE):
        head = f"{kind} {name}  image {image_of(run, registration)}"
        if registration.type == CONTAINER:
            memory = inputs.get("memory")
            head += f"  network {inputs.get('networkMode') or 'default'}  restart {inputs.get('restart') or 'no'}"
            head += f"  memory {int(memory)} MiB" if memory else "  memory unlimited"
        else:
            replicas = _dig(inputs, "mode", "replicated", "replicas")
            head += "  global" if _dig(inputs, "mode", "global") else f"  replicas {replicas or 1}"
        lines.append(head)
        bound = bindings(topology, registration)
        if bound:
            lines.append("    binds " + ", ".join(str(b) for b in bound))
        mounts = inputs.get("volumes") or _dig(inputs, "taskSpec", "containerSpec", "mounts") or []
        for mount in mounts:
            source = mount.get("volumeName") or mount.get("hostPath") or mount.get("source") or "?"
            target = mount.get("containerPath") or mount.get("target") or "?"
            lines.append(f"    mounts {source} at {target}{' (read-only)' if mount.get('readOnly') else ''}")
        texts = list(strings(inputs))
        for owner, value in sorted((owner, value) for value, owner in secrets.items() if any(value in s for s in texts)):
            places = published_at(value, pubs)
            lines.append(f"    uses secret {owner}" + (f", published at {'; '.join(places)}" if places else ""))
    elif registration.type == VOLUME:
        flags = [flag for flag, on in (("protected", registration.protect), ("retained on delete", registration.retain_on_delete)) if on]
        lines.append(f"volume {name}" + (f"  ({', '.join(flags)})" if flags else "  (NOT protected)"))
    elif registration.type == NETWORK:
        extra = [f"driver {inputs.get('driver') or 'bridge'}"] + (["attachable"] if inputs.get("attachable") else [])
        lines.append(f"network {name}  {', '.join(extra)}")
    elif registration.type == IMAGE:
        lines.append(f"image {inputs.get('name')}{'  (kept locally)' if inputs.get('keepLocally') else ''}")
    elif registration.type == "command:remote:CopyToRemote":
        lines.append(f"file {inputs.get('remotePath')}")
    elif registration.type == COMMAND:
        lines.append(f"command {registration.name}" + ("  (logging off)" if inputs.get("logging") == "none" else ""))
    else:
        lines.append(f"{kind} {name}")
    return lines


def _group_order(component: Optional[Registration]) -> tuple[str, str]:
    return (component.type, component.name) if component else ("", "")


def render_certificates(config: StackConfig) -> list[str]:
    """Which public names get a certificate, and from where (edge.tls)."""
    tls = config.edge.tls
    names = sorted({route.host for _, route in config.edge_routes()})
    out = [f"== Certificates (edge.tls.mode {tls.mode})"]
    if tls.acme is not None:
        out.append(
            f"  ACME ({config.versions.lego} from {tls.acme.directory_url}, contact {tls.acme.email}; "
            "renewed by samarth-certificates.timer with a third of the lifetime left):"
        )
        out.extend(f"    {name}" for name in config.acme_hosts())
    for name in names:
        files = tls.operator_files(name)
        if files is not None:
            out.append(f"  {name}: operator files {files.certificate_path}, {files.key_path}")
    out.append("")
    return out


def render_plan(topology: Topology) -> str:
    run = topology.run
    secrets = generated_secrets(run)
    pubs = publications(run)
    installed_services = {(n.members[0].urn, n.server): n for n in nodes(topology) if not n.members[0].custom}
    out: list[str] = [f"Plan for stack {run.stack}: {len(run.registrations)} resources, {len(topology.servers)} servers", ""]
    if run.warnings:
        out += ["== Warnings", *(f"  warning: {message}" for message in run.warnings), ""]
    for server in topology.servers:
        spec = topology.config.servers[server]
        public = f", public {spec.public_address}" if spec.public_address else ""
        out.append(f"== {server}  (private {spec.private_ip}{public}; {spec.memory_mib} MiB, {spec.cpus} CPUs)")
        placed = topology.on(server)
        groups: dict[str, list[Registration]] = defaultdict(list)
        for registration in placed:
            if registration.type in SHOWN:
                component = topology.component_of(registration)
                groups[component.urn if component else ""].append(registration)
        # Registration order varies between runs (resources register concurrently): sort for a stable plan.
        for urn, members in sorted(groups.items(), key=lambda item: _group_order(run.by_urn.get(item[0]))):
            component = run.by_urn.get(urn)
            out.append(f"  [{component.type} {component.name}]" if component else "  [host]")
            installed = installed_services.get((urn, server))
            if installed is not None and installed.endpoints:
                out.append("    binds " + ", ".join(f"{a}:{p}" for a, p in installed.endpoints) + "  (from its scripts)")
            for registration in sorted(members, key=lambda r: (SHOWN.index(r.type), r.name)):
                first, *rest = describe(topology, registration, secrets, pubs)
                out.append(f"    {first}")
                out.extend(f"    {line}" for line in rest)
        others = sorted({r.type for r in placed if r.custom and r.type not in SHOWN and not r.type.startswith("pulumi:providers:")})
        if others:
            out.append(f"  also: {', '.join(others)}")
        out.append("")
    out.extend(render_certificates(topology.config))
    out.append("== Vault kv (generated values are listed by name; values are never printed)")
    for pub in pubs:
        out.append(f"  {pub.path}: {', '.join(pub.keys)}")
    for value, name in sorted(secrets.items(), key=lambda item: item[1]):
        places = published_at(value, pubs)
        out.append(f"  secret {name} -> {'; '.join(places) if places else 'not published'}")
    unplaced = sorted(
        {
            r.type
            for r in run.registrations
            if r.custom and r.urn not in topology.server_of and r.type not in (SECRET_V2, PASSWORD) and not r.type.startswith("pulumi:providers:")
        }
    )
    if unplaced:
        out.append(f"  also not tied to one server: {', '.join(unplaced)}")
    out.append("")
    out.extend(upstreams.plan_lines(topology.config.versions.model_dump(by_alias=True)))
    out.append("")
    out.append("== Host firewall: who may reach which private port (components/platform/firewall/component.py; others are refused)")
    out.extend(f"  {line}" for line in firewall.matrix_table(run.exports.get("firewall", [])).splitlines())
    out.append("")
    out.extend(deploy_graph.render(run, topology.server_of, topology.servers))
    out += ["", *pull_plan(topology)]
    out += ["", *backup_plan(topology.config)]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class PlannedPull:
    server: ServerName
    image: str  # empty: not recorded (what ``by`` says pulls it is unknown here)
    by: str
    source: str


def _pull_source(image: str, mirror: Optional[str], gated: Optional[bool]) -> str:
    """Where dockerd gets ``image``: its own registry, or Docker Hub through the mirror or directly.
    ``gated``: the pull waits for the mirror to answer (None: a script's pull, which does)."""
    registry = image_registry(image)
    if registry != DOCKER_HUB:
        return f"{registry}, directly (mirrors cover Docker Hub only)"
    if mirror is None:
        return "Docker Hub, directly (no mirror)"
    if gated is False:
        return "Docker Hub, directly: registered before the mirror answers"
    return "Docker Hub, through the mirror"


def planned_pulls(topology: Topology) -> tuple[list[PlannedPull], list[Registration]]:
    """Every image pull of a fresh `up`, per server: the Docker provider's (its RemoteImages, in the run)
    and those the services' scripts make (``Declaration.pulls``); and the containers Docker Hub pulls wait
    for (the mirror's)."""
    run, config = topology.run, topology.config
    mirror = mirror_url(config)
    gates: dict[str, Registration] = {}
    found: list[PlannedPull] = []
    for image in sorted(run.of_type(IMAGE), key=lambda r: r.name):
        server = topology.server_of.get(image.urn)
        if server is None:
            continue
        waits = [run.by_urn[u] for u in image.dependencies if u in run.by_urn and run.by_urn[u].type == CONTAINER]
        gates.update({w.urn: w for w in waits})
        ref = str(image.plain_inputs.get("name"))
        found.append(PlannedPull(server, ref, f"RemoteImage {image.name}", _pull_source(ref, mirror, bool(waits))))
    for declaration in assembly.declarations(config).values():
        for pull in declaration.pulls:
            source = _pull_source(pull.image, mirror, None) if pull.image else "not recorded for this release: read its compose file"
            found.append(PlannedPull(server_name(pull.server), pull.image, pull.by, source))
    return found, list(gates.values())


def pull_plan(topology: Topology) -> list[str]:
    """The pulls of a fresh `up`, server by server, with where each comes from, and the bootstrap order
    of the Docker Hub mirror (``mirror``): what is pulled before it exists, and what waits for it."""
    config = topology.config
    mirror = mirror_url(config)
    pulls, gates = planned_pulls(topology)
    if mirror is None:
        out = ["== Image pulls of a fresh `up` (mirror.enabled is false: every server pulls from each registry itself)"]
    else:
        early = sorted({f"{p.image} on {p.server}" for p in pulls if p.source.endswith("before the mirror answers")})
        answered = ", ".join(f"container {g.plain_inputs.get('name') or g.name} on {topology.server_of.get(g.urn, '?')}" for g in gates)
        out = [
            f"== Image pulls of a fresh `up` (dockerd asks the mirror {mirror} for Docker Hub images only; "
            f"the mirror pulls from {config.mirror.remote_url} as {config.mirror.hub_username or 'an anonymous client'})",
            "  bootstrap order:",
            "    1. every server's /etc/docker/daemon.json lists the mirror in registry-mirrors (its log defaults, before "
            "any pull); while the mirror does not answer, dockerd pulls from Docker Hub itself",
            f"    2. from Docker Hub directly: {', '.join(early) or 'nothing'}",
            f"    3. the mirror answers ({answered or 'nothing waits for it'})",
            "    4. every other Docker Hub pull below goes through the mirror (each waits for step 3); other registries are pulled from directly",
        ]
    for server in topology.servers:
        here = [p for p in pulls if p.server == server]
        images = {p.image for p in here}
        hub = {p.image for p in here if p.source.endswith("through the mirror")}
        out.append(f"  {server}: {len(images)} image{'s' if len(images) != 1 else ''}, {len(hub)} of them through the mirror")
        seen: set[str] = set()
        width = max((len(p.image) for p in here), default=0)
        for pull in here:
            source = "already on the server (pulled above)" if pull.image and pull.image in seen else pull.source
            seen.add(pull.image)
            out.append(f"    {pull.image or '?':<{width}}  {source}  [{pull.by}]")
        if not here:
            out.append("    none by this program (what Jenkins deploys pulls Docker Hub images through the mirror too)")
    return out


def backup_plan(config: StackConfig) -> list[str]:
    """Each server's backup schedule, where its repository lives and its estimated size, and what is
    not backed up and why."""
    if not config.backups.enabled:
        return ["== Backups: disabled (backups.enabled is false)"]
    keep = config.backups.retention
    out = [
        f"== Backups (restic; keep {keep.hourly} hourly, {keep.daily} daily, {keep.weekly} weekly, {keep.monthly} monthly; "
        f"repository size estimated from backups.dataGib and {config.backups.daily_change_percent:g}% change a day)"
    ]
    declarations = assembly.declarations(config)
    sources = assembly.backup_sources(config, declarations)
    store = server_name(backup_settings.object_store(list(declarations.values())).server)
    repositories = backup_settings.repository_placements(config.backups, sources, store)
    out += [f"  {line}" for line in backups.schedule_table(config.backups, sources, store)]
    for server, spec in config.servers.items():
        held = [p for p in repositories if p.server == server]
        if held:
            declared = f"{spec.disk_gib} GiB declared" if spec.disk_gib else "diskGib not declared"
            out.append(f"  {server} holds {', '.join(f'{p.what} (~{p.disk_gib} GiB)' for p in held)}; {declared}")
    out.append("  not backed up:")
    out += [f"    {what}: {why}" for what, why in assembly.not_backed_up(config).items()]
    return out


# ----------------------------------------------------------------------------------------------
# The diagram


@dataclass
class Node:
    id: str
    server: ServerName
    label: str
    members: list[Registration]
    endpoints: list[tuple[str, int]] = field(default_factory=list)
    public: list[int] = field(default_factory=list)


def _node_id(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))


def nodes(topology: Topology) -> list[Node]:
    """Services: containers and swarm services; and, per server, each component that runs neither
    there but runs commands there (a compose-based installer, a swarm member)."""
    run = topology.run
    found: list[Node] = []
    for registration in run.registrations:
        server = topology.server_of.get(registration.urn)
        if server is None or registration.type not in (CONTAINER, SERVICE):
            continue
        name = str(registration.plain_inputs.get("name") or registration.name)
        node = Node(_node_id(server, name), server, name, [registration])
        addresses = _addresses(topology, server)
        for binding in bindings(topology, registration):
            if binding.address == ANY_ADDRESS:
                node.endpoints += [(address, binding.port) for address in addresses]
                node.public.append(binding.port)
            else:
                node.endpoints.append((binding.address, binding.port))
        found.append(node)
    owned = {endpoint for node in found for endpoint in node.endpoints}
    for component in run.registrations:
        if component.custom or not component.type.startswith("samarth:") or component.type == HOST:
            continue
        below = run.under(component)
        if any(r.type.startswith("samarth:") for r in below):
            continue
        commands: dict[ServerName, list[Registration]] = defaultdict(list)
        for registration in below:
            if registration.type == COMMAND and registration.urn in topology.server_of:
                commands[topology.server_of[registration.urn]].append(registration)
        for server, mine in commands.items():
            if any(r.type in (CONTAINER, SERVICE) and topology.server_of.get(r.urn) == server for r in below):
                continue
            node = Node(_node_id(server, component.name), server, component.name, [component, *mine])
            # What such a service binds is only in its scripts (a loopback address there is a client).
            texts = (s for r in mine for s in strings(r.plain_inputs))
            for binding in mentioned_bindings(topology, server, texts, loopback=False):
                if (binding.address, binding.port) not in owned:
                    node.endpoints.append((binding.address, binding.port))
            found.append(node)
    # Registration order varies between runs; the first node to bind an endpoint owns it.
    return sorted(found, key=lambda n: n.id)


def _addresses(topology: Topology, server: ServerName) -> list[str]:
    """The server's private and public addresses, and loopback last."""
    spec = topology.config.servers[server]
    return [spec.private_ip, *([spec.public_address] if spec.public_address else []), "127.0.0.1"]


def _texts(topology: Topology, node: Node, by_component: dict[str, list[Node]]) -> list[str]:
    """The strings a node's configuration consists of: its own inputs (and its commands'), plus
    those of its component's commands and files when the node is the component's only service."""
    run = topology.run
    texts: list[str] = []
    components: dict[str, Registration] = {}
    for member in node.members:
        if member.custom:
            texts.extend(strings(member.plain_inputs))
            component = topology.component_of(member)
        else:
            component = member
        if component is not None:
            components[component.urn] = component
    for component in components.values():
        if len(by_component.get(component.urn, [])) == 1:
            for registration in run.under(component):
                if registration.type in (COMMAND, "command:remote:CopyToRemote") and topology.component_of(registration) is component:
                    texts.extend(strings(registration.plain_inputs))
    return texts




def edges(topology: Topology, found: list[Node]) -> dict[tuple[str, str], list[int]]:
    """``(from id, to id) -> ports``: to a service that binds the address and port, or to the server
    (its subgraph) when nothing this program runs there binds it, say a swarm stack Jenkins deploys."""
    by_component: dict[str, list[Node]] = defaultdict(list)
    for node in found:
        member = node.members[0]
        component = member if not member.custom else topology.component_of(member)
        if component is not None:
            by_component[component.urn].append(node)
    owners: dict[tuple[str, int], Node] = {}
    for node in found:
        for endpoint in node.endpoints:
            owners.setdefault(endpoint, node)
    private_ips = {topology.config.servers[server].private_ip: server for server in topology.servers}
    addresses = {address for address, _ in owners} | set(private_ips)
    result: dict[tuple[str, str], set[int]] = defaultdict(set)
    for node in found:
        texts = _texts(topology, node, by_component)
        values = {t.split("=", 1)[1] if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", t, re.S) else t for t in texts}
        # An address and port written together, or as two separate values (HOST=, PORT=).
        mentioned = address_ports("\n".join(texts), addresses)
        for (address, port), owner in owners.items():
            if owner is not node and ((address, port) in mentioned or (address in values and str(port) in values)):
                result[(node.id, owner.id)].add(port)
        for address, port in mentioned:
            server = private_ips.get(address)
            if server is not None and server != node.server and (address, port) not in owners:
                result[(node.id, _node_id("srv", server))].add(port)
    return {key: sorted(ports) for key, ports in sorted(result.items())}


def render_diagram(topology: Topology) -> str:
    found = nodes(topology)
    lines = ["flowchart LR"]
    if any(port in (80, 443) for node in found for port in node.public):
        lines.append("  internet((Internet))")
    for server in topology.servers:
        spec = topology.config.servers[server]
        lines.append(f'  subgraph {_node_id("srv", server)}["{server} {spec.private_ip}"]')
        members = sorted((n for n in found if n.server == server), key=lambda n: n.id)
        for node in members:
            ports = sorted({p for _, p in node.endpoints})
            label = node.label + (f"<br/>:{' :'.join(str(p) for p in ports)}" if ports else "")
            lines.append(f'    {node.id}["{label}"]')
        if not members:
            lines.append(f'    {_node_id(server, "empty")}["(nothing deployed)"]')
        lines.append("  end")
    for node in sorted(found, key=lambda n: n.id):
        web = sorted({port for port in node.public if port in (80, 443)})
        if web:
            lines.append(f"  internet -->|{' '.join(str(p) for p in web)}| {node.id}")
    for (source, target), ports in edges(topology, found).items():
        lines.append(f"  {source} -->|{' '.join(str(p) for p in ports)}| {target}")
    return "\n".join(lines) + "\n"


def readme_block(diagram: str) -> str:
    return f"{README_START}\n```mermaid\n{diagram}```\n{README_END}"


def embed(readme: str, diagram: str) -> str:
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README has no {README_START} ... {README_END} markers")
    return pattern.sub(lambda _: readme_block(diagram), readme, count=1)


# ----------------------------------------------------------------------------------------------


def build(stack: str, root: Path = ROOT) -> Topology:
    run = run_program(stack, root=root)
    if run.error is not None:
        raise run.error
    return place(run, stack_deployment(stack, root).config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", required=True, help="stack to plan (a Pulumi.<stack>.yaml)")
    parser.add_argument("--diagram", type=Path,
                        help="where to write the Mermaid diagram (default docs/topology-prod.mmd for prod, "
                             "build/topology-<stack>.mmd for any other stack)")
    parser.add_argument("--write-readme", action="store_true", help="also update the diagram in README.md (prod only)")
    args = parser.parse_args(argv)
    try:
        known_stack_file(args.stack)
    except ValueError as exc:
        parser.error(str(exc))
    if args.write_readme and args.stack != DOCUMENTED_STACK:
        parser.error(f"--write-readme draws the README's {DOCUMENTED_STACK} diagram; it refuses stack {args.stack!r}")
    try:
        topology = build(args.stack)
    except Exception as exc:  # a config or program error is the plan's answer; show it plainly
        print(f"plan: the program fails for stack {args.stack}:\n{exc}", file=sys.stderr)
        return 1
    print(render_plan(topology), end="")
    diagram = render_diagram(topology)
    path = args.diagram or diagram_path(args.stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(diagram)
    print(f"diagram: {path}")
    if args.write_readme:
        readme = ROOT / "README.md"
        readme.write_text(embed(readme.read_text(), diagram))
        print("README.md topology updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
