"""Edge route table: bad routes stop the program before any registration, naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.program_runs import program_run
from tools.offline import PROJECT, stack_file


def _edge(stack: str = "prod") -> dict:
    document = yaml.safe_load(stack_file(stack).read_text())
    return copy.deepcopy(document["config"][f"{PROJECT}:edge"])


def _route_index(edge: dict, upstream: str) -> int:
    return next(i for i, r in enumerate(edge["routes"]) if r["upstream"] == upstream)


def _fails_early(edge: dict) -> str:
    run = program_run("prod", overrides={"edge": edge})
    assert run.error is not None, "bad edge config was accepted"
    assert run.registrations == [], "resources were registered before the config was rejected"
    return str(run.error)


def test_unknown_upstream_names_the_route_key() -> None:
    edge = _edge()
    edge["routes"][2]["upstream"] = "sentri"
    message = _fails_early(edge)
    assert "edge.routes[2].upstream: unknown upstream 'sentri'" in message


def test_duplicate_host_and_path_names_both_routes() -> None:
    edge = _edge()
    first = edge["routes"][4]
    edge["routes"].append({"host": first["host"], "path": first["path"], "upstream": "swarm", "port": 9999})
    message = _fails_early(edge)
    assert (
        f"edge.routes[{len(edge['routes']) - 1}]: host {first['host']!r} and path {first['path']!r} "
        "are already routed by edge.routes[4]"
    ) in message


def test_a_route_repeating_sentrys_observability_host_name() -> None:
    document = yaml.safe_load(stack_file("prod").read_text())["config"]
    sentry_host = document[f"{PROJECT}:observability"]["sentry"]["hostName"]
    edge = _edge()
    edge["routes"].append({"host": sentry_host, "upstream": "swarm", "port": 9999})
    message = _fails_early(edge)
    assert f"observability.sentry.hostName: host {sentry_host!r} and path '/' are already routed by edge.routes[6]" in message


def test_a_port_clash_on_the_application_server_fails_early() -> None:
    document = yaml.safe_load(stack_file("prod").read_text())["config"]
    observability = copy.deepcopy(document[f"{PROJECT}:observability"])
    observability["sentry"]["port"] = 9000
    run = program_run("prod", overrides={"observability": observability})
    assert run.registrations == []
    assert "observability.sentry.port: port 9000/tcp on application is already used by MinIO's S3 API" in str(run.error)


def test_swarm_route_without_port() -> None:
    edge = _edge()
    index = _route_index(edge, "swarm")
    del edge["routes"][index]["port"]
    message = _fails_early(edge)
    assert f"edge.routes[{index}]: port is required for upstream 'swarm'" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: e["routes"][_route_index(e, "vault")].pop("allow"), "allow is required for upstream 'vault'"),
        (lambda e: e["routes"][_route_index(e, "registry")].update(port=5000), "port is only for swarm routes"),
        (lambda e: e["routes"][_route_index(e, "registry")].update(path="/v2/"), "path must be '/' for upstream 'registry'"),
        (lambda e: e["routes"].pop(_route_index(e, "registry")), "exactly one route must have upstream 'registry' (found 0)"),
        (lambda e: e["routes"][0].update(host="registry.other.example.com"), "edge.routes[0].host: 'registry.other.example.com' is not under domain"),
        (lambda e: e["routes"][1].update(path="doc-generator"), "edge.routes[1].path: 'doc-generator' is not a URL path"),
        (lambda e: e["routes"][_route_index(e, "vault")].update(allow=["10.20.0.1/16"]), "is not a network in CIDR form"),
        (lambda e: e["tls"].update(keyPath="privkey.pem"), "edge.tls.keyPath: 'privkey.pem' is not an absolute path"),
        (lambda e: e["routes"][0].update(upsteam="registry"), "edge.routes[0].upsteam: unknown key"),
    ],
)
def test_other_route_mistakes_fail_early(change, expected: str) -> None:
    edge = _edge()
    change(edge)
    assert expected in _fails_early(edge)


def test_missing_edge_section() -> None:
    run = program_run("prod", overrides={"edge": None})
    assert run.registrations == []
    assert "edge: required key is missing" in str(run.error)


@pytest.mark.parametrize("path", ["certs/fullchain.pem", "/etc/ssl/my cert.pem", "/etc/ssl/x;include /etc/passwd"])
def test_tls_paths_must_be_plain_absolute_paths(path: str) -> None:
    edge = _edge()
    edge["tls"]["certificatePath"] = path
    message = _fails_early(edge)
    assert "edge.tls.certificatePath" in message and "is not an absolute path" in message
