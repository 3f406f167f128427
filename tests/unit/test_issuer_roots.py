"""The roots a Docker daemon must trust for the registry's name when its certificate comes from a CA no daemon
trusts (``edge.tls.issuerRoots``; Let's Encrypt's staging roots, known to the program): checked as a trust
bundle when the config is loaded, and installed for the registry's name alone by every swarm member's
registry login (tests/lab/test_rehearsal_lab.py logs in for real against the lab's ACME CA)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from components.config import ConfigError
from components.deployment import load_deployment
from components.services.edge.settings import LETSENCRYPT_STAGING_ROOTS, issuer_roots
from components.shared.model import SWARM_MANAGER
from tools.offline import COMMAND, PROJECT, ProgramRun, read_stack_values, stack_deployment, stack_file, with_project_defaults

A_CERTIFICATE = LETSENCRYPT_STAGING_ROOTS.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"


def _staging_with_roots(path: str) -> Any:
    values, secure = read_stack_values(stack_file("staging"))
    edge = json.loads(values[f"{PROJECT}:edge"])
    edge["tls"]["issuerRoots"] = path
    values[f"{PROJECT}:edge"] = json.dumps(edge)
    return load_deployment(PROJECT, "staging", with_project_defaults(values), secure)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot be read on the machine running Pulumi"),
    ("", "holds no PEM certificate"),
    ("not a certificate\n", "holds no PEM certificate"),
    (A_CERTIFICATE + "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
     "holds a PRIVATE KEY block: only CERTIFICATE blocks belong in a trust bundle"),
    ("-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n", "holds no PEM certificate"),
])
def test_issuer_roots_that_are_not_a_bundle_of_certificates_are_refused(tmp_path: Path, content: str | None, problem: str) -> None:
    bundle = tmp_path / "roots.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(ConfigError) as refused:
        _staging_with_roots(str(bundle))
    assert "edge.tls.issuerRoots" in str(refused.value) and problem in str(refused.value), str(refused.value)


def test_issuer_roots_relative_to_the_project_and_absolute_are_read(tmp_path: Path) -> None:
    bundle = tmp_path / "roots.pem"
    bundle.write_text(A_CERTIFICATE)
    assert issuer_roots(_staging_with_roots(str(bundle)).config.edge.tls) == A_CERTIFICATE
    relative = "components/services/edge/letsencrypt-staging-roots.pem"
    assert issuer_roots(_staging_with_roots(relative).config.edge.tls) == LETSENCRYPT_STAGING_ROOTS.read_text()


def test_staging_trusts_lets_encrypts_staging_roots_and_prod_the_system_store() -> None:
    assert issuer_roots(stack_deployment("staging").config.edge.tls) == LETSENCRYPT_STAGING_ROOTS.read_text()
    assert issuer_roots(stack_deployment("prod").config.edge.tls) is None


def test_the_bundled_staging_roots_are_lets_encrypts_self_signed_staging_roots() -> None:
    roots = x509.load_pem_x509_certificates(LETSENCRYPT_STAGING_ROOTS.read_bytes())
    names = {root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value for root in roots}
    assert names == {"(STAGING) Pretend Pear X1", "(STAGING) Bogus Broccoli X2", "(STAGING) Yearning Yucca Root YE",
                     "(STAGING) Yonder Yam Root YR"}
    for root in roots:
        assert root.issuer == root.subject
        assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _login(run: ProgramRun, node: str) -> str:
    return str(run.named(COMMAND, f"{node}-registry-login").plain_inputs["create"])


def test_every_swarm_members_login_trusts_the_roots_where_they_are_needed(runs: dict[str, ProgramRun]) -> None:
    staging = _login(runs["staging"], SWARM_MANAGER)
    assert "REGISTRY_ROOTS='-----BEGIN CERTIFICATE-----" in staging
    assert LETSENCRYPT_STAGING_ROOTS.read_text().strip() in staging
    assert "REGISTRY_ROOTS=''" in _login(runs["prod"], SWARM_MANAGER)
