"""The offline plan: every workload placed on its server, secrets shown by name only, the README's
diagram current. The real program is checked as it stands; a small sample program in the same shape
(tests/support/plan_sample) pins down placement, wiring and secret reporting while components are added."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from components.shared.model import SERVER_NAMES
from tests.support.program_runs import program_rerun
from tools.offline import ROOT, TEST_SECRETS, ProgramRun, reveal, secret_strings
from tools.plan import (
    CONTAINER,
    SERVICE,
    Topology,
    build,
    diagram_path,
    embed,
    place,
    readme_block,
    render_diagram,
    render_plan,
)
from tools.plan import main as plan_main


def _topology(run: ProgramRun) -> Topology:
    from components.config import load_stack_config
    from tools.offline import PROJECT, read_stack_values, stack_file

    return place(run, load_stack_config(PROJECT, read_stack_values(stack_file(run.stack))[0]))


def _sections(plan: str) -> dict[str, str]:
    """Plan text per server header (``== name  (...)``)."""
    parts = re.split(r"^== (\S+) .*$", plan, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.fixture(scope="module")
def prod_topology(prod: ProgramRun) -> Topology:
    return _topology(prod)


def test_prod_plan_lists_the_six_servers_and_every_workload_under_its_own(prod_topology: Topology) -> None:
    plan = render_plan(prod_topology)
    sections = _sections(plan)
    assert list(sections)[:6] == list(SERVER_NAMES)
    run = prod_topology.run
    workloads = run.of_type(CONTAINER) + run.of_type(SERVICE)
    for workload in workloads:
        server = prod_topology.server_of.get(workload.urn)
        assert server in SERVER_NAMES, f"{workload.name} is not placed on a server"
        name = workload.plain_inputs.get("name") or workload.name
        assert re.search(rf"^\s+(container|service) {re.escape(name)} ", sections[server], re.M), f"{name} missing under {server}"


def test_prod_plan_prints_no_secret_value(prod_topology: Topology) -> None:
    plan = render_plan(prod_topology)
    generated = {reveal(r.outputs.get("result")) for r in prod_topology.run.of_type("random:index/randomPassword:RandomPassword")}
    # Secret inputs carrying a generated value (URLs, env lines, published maps) and the SSH key.
    hidden = {s for r in prod_topology.run.registrations for s in secret_strings(r.inputs) if any(g in s for g in generated)}
    hidden |= generated | {line for line in TEST_SECRETS["sshPrivateKey"].splitlines() if "offline" in line}
    assert [s for s in hidden if s in plan] == []


def test_plan_and_diagram_are_the_same_on_every_run(prod_topology: Topology) -> None:
    again = _topology(program_rerun("prod"))
    assert render_plan(again) == render_plan(prod_topology)
    assert render_diagram(again) == render_diagram(prod_topology)


def test_readme_and_docs_diagram_match_the_program(prod_topology: Topology) -> None:
    diagram = render_diagram(prod_topology)
    readme = (ROOT / "README.md").read_text()
    hint = "stale: run `venv/bin/python -m tools.plan --stack prod --write-readme` and commit README.md and docs/"
    assert readme_block(diagram) in readme, hint
    assert diagram_path("prod").read_text() == diagram, hint


def test_embed_replaces_only_the_marked_block() -> None:
    readme = "# x\n\nbefore\n<!-- topology:start -->\nold\n<!-- topology:end -->\nafter\n"
    assert embed(readme, "flowchart LR\n") == "# x\n\nbefore\n" + readme_block("flowchart LR\n") + "\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        embed("# no markers\n", "flowchart LR\n")


# The sample program ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    root = tmp_path_factory.mktemp("plan_sample")
    shutil.copy2(ROOT / "tests" / "support" / "plan_sample" / "__main__.py", root / "__main__.py")
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy2(ROOT / name, root / name)
    return build("prod", root=root)


def test_resources_are_placed_by_provider_connection_and_parent(sample: Topology) -> None:
    run = sample.run
    placed = {r.name: sample.server_of.get(r.urn) for r in run.registrations}
    assert placed["db2-postgres-yaus"] == "db2"  # Docker provider
    assert placed["db2-sysctl"] == "db2"  # SSH connection
    assert placed["swarm-yaus"] == "swarm-master"
    assert placed["swarm-yaus-config"] == "swarm-master"  # a provider made outside the Host, same address
    assert placed["sentry-install"] == "application"
    assert placed["db2"] == "db2"  # a component with everything on one server
    assert placed["db2-yaus-postgres"] is None  # a generated password runs nowhere
    assert placed["vault-yaus"] is None


def test_sample_plan_details(sample: Topology) -> None:
    sections = _sections(render_plan(sample))
    db2 = sections["db2"]
    assert "container postgres-yaus  image postgres:16.15  network bridge  restart unless-stopped  memory 512 MiB" in db2
    assert "binds 10.20.0.22:5432->5432/tcp" in db2
    assert "mounts postgres-yaus-data at /var/lib/postgresql/data" in db2
    assert "volume postgres-yaus-data  (protected, retained on delete)" in db2
    assert "volume scratch  (NOT protected)" in db2
    assert "uses secret db2-yaus-postgres, published at kv/samarth/yaus DATABASE_URL" in db2
    assert "command db2-sysctl" in db2
    master = sections["swarm-master"]
    assert "service samarth_yaus  image 10.20.0.10:5000/yaus:1.2.3  replicas 1" in master
    assert "binds 0.0.0.0:3333->3333/tcp" in master
    assert "network application_default  driver overlay, attachable" in master
    assert "serviceconfig yaus-config" in master
    application = sections["application"]
    assert "binds 0.0.0.0:80->80/tcp, 0.0.0.0:443->443/tcp" in application
    assert "file /etc/nginx/conf.d/yaus.conf" in application
    assert "command sentry-install  (logging off)" in application
    assert "binds 10.20.0.10:9000  (from its scripts)" in application
    assert "container vault  image hashicorp/vault:1.20.4  network host" in application
    assert "binds 10.20.0.10:8200, 127.0.0.1:8200\n" in application  # read from its configuration file
    vault = sections["Vault"]
    assert "kv/samarth/yaus: DATABASE_URL, RMQ_QUEUE" in vault
    assert "secret db2-yaus-postgres -> kv/samarth/yaus DATABASE_URL" in vault
    assert "secret db2-internal -> not published" in vault
    password = reveal(sample.run.named("random:index/randomPassword:RandomPassword", "db2-yaus-postgres").outputs["result"])
    assert password not in render_plan(sample)


def test_sample_diagram_wiring(sample: Topology) -> None:
    diagram = render_diagram(sample)
    assert diagram.startswith("flowchart LR\n")
    edges = {line.strip() for line in diagram.splitlines() if "-->" in line}
    assert edges == {
        "internet -->|80 443| application_nginx",
        "application_nginx -->|3333| swarm_master_samarth_yaus",  # the route in Nginx's config file
        "swarm_master_samarth_yaus -->|5432| db2_postgres_yaus",  # DATABASE_URL
        "application_sentry -->|5432| db2_postgres_yaus",  # the installer's command
        "application_nginx -->|9000| application_sentry",  # a service known only from its install script
        "application_nginx -->|8200| application_vault",  # host networking: bound as its configuration says
        "swarm_master_samarth_yaus -->|5000| srv_application",  # its image's registry: nothing here binds it
        "swarm_node2_cluster -->|2377| swarm_master_cluster",  # one component on two servers
    }
    assert 'swarm_master_cluster["cluster<br/>:2377"]' in diagram
    assert 'swarm_node2_cluster["cluster"]' in diagram
    assert 'application_sentry["sentry<br/>:9000"]' in diagram
    assert 'db2_postgres_yaus["postgres-yaus<br/>:5432"]' in diagram
    assert 'db1_empty["(nothing deployed)"]' in diagram
    for server in SERVER_NAMES:
        assert f'["{server} ' in diagram


def test_command_line_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's own main() in this process (tests/unit/test_cli.py runs it in a real interpreter)."""
    diagram = tmp_path / "topology.mmd"
    assert plan_main(["--stack", "prod", "--diagram", str(diagram)]) == 0, capsys.readouterr().err
    assert list(_sections(capsys.readouterr().out))[:6] == list(SERVER_NAMES)
    assert diagram.read_text() == diagram_path("prod").read_text()
    with pytest.raises(SystemExit) as unknown:
        plan_main(["--stack", "qa"])
    assert unknown.value.code == 2 and "unknown stack 'qa'" in capsys.readouterr().err
