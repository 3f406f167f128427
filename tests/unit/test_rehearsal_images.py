"""What the lab serves for each pinned image (lab/rehearsal_images.py), checked without a lab: every image the
program pulls or runs has a recipe and a row in docs/lab.md, no recipe is left unused, and `serve` refuses,
before it touches a host, what it cannot serve. tests/lab/test_rehearsal_images_lab.py serves and runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import LabError, LabHost
from lab.rehearsal_images import RECIPES, serve, split_reference, upstream_version
from tools.offline import IMAGE, ROOT, ProgramRun, stack_deployment

# The images the scripts run by their pin rather than through a RemoteImage: lego (the certificates
# script's `docker run`), restic and rclone (the backup installer's `docker create`; rclone only with an
# off-site repository).
SCRIPT_PINS = ("lego", "restic", "rclone")
NO_HOST = LabHost(name="none", address="", address6="", namespace="", docker_sock=Path("/nonexistent"),
                  ssh_key_path=Path("/nonexistent"), known_hosts=Path("/nonexistent"), ssh_config=Path("/nonexistent"),
                  host_key="", root=Path("/nonexistent"))


def _pins(run: ProgramRun) -> set[str]:
    versions = stack_deployment(run.stack).config.versions
    return {str(image.plain_inputs["name"]) for image in run.of_type(IMAGE)} | {getattr(versions, key) for key in SCRIPT_PINS}


def test_every_image_the_program_pulls_or_runs_has_a_recipe(stack_run: ProgramRun) -> None:
    for reference in _pins(stack_run):
        repository, _ = split_reference(reference)
        assert repository in RECIPES, f"{reference}: no recipe in lab/rehearsal_images.py"


def test_every_recipe_serves_a_pin(runs: dict[str, ProgramRun]) -> None:
    repositories = {split_reference(reference)[0] for run in runs.values() for reference in _pins(run)}
    assert set(RECIPES) == repositories


def test_docs_list_every_served_image_with_its_kind_and_the_lab_stacks_pin(runs: dict[str, ProgramRun]) -> None:
    """docs/lab.md's table: one row per recipe, its kind, and staging's pin (the lab stack's)."""
    text = (ROOT / "docs" / "lab.md").read_text()
    rows = {repository: (kind, pin) for repository, kind, pin in
            re.findall(r"^\| `([^`]+)` \| (real|stand-in) \| [^|]+ \| `([^`]+)` \|", text, re.M)}
    staging = {split_reference(reference) for reference in _pins(runs["staging"])}
    assert rows == {repository: (RECIPES[repository].kind, tag) for repository, tag in staging}


@pytest.mark.parametrize("reference, refusal", [
    ("mysql:8.4.3", "the lab has no recipe for mysql"),
    ("postgres:16.15@sha256:" + "a" * 64, "a digest pin cannot be served"),
    ("postgres", "no tag"),
    ("registry.example.org:5000/postgres", "no tag"),
])
def test_serve_refuses_what_it_cannot_serve(reference: str, refusal: str) -> None:
    with pytest.raises(LabError, match=refusal):
        serve(NO_HOST, reference)


def test_a_reference_splits_at_its_tag_not_at_a_registry_port() -> None:
    assert split_reference("registry.example.org:5000/postgres:16.15") == ("registry.example.org:5000/postgres", "16.15")
    assert split_reference("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z") == ("quay.io/minio/minio", "RELEASE.2025-09-07T16-13-09Z")


@pytest.mark.parametrize("debian, upstream", [
    ("5:7.0.15-1~deb12u7", "7.0.15"), ("2.8.2+ds1-1", "2.8.2"), ("1:25.2.3+dfsg-1+deb12u4", "25.2.3"),
    ("15.18-0+deb12u1", "15.18"), ("0.14.0-1+b5", "0.14.0"), ("2.7.2", "2.7.2"),
])
def test_served_versions_are_the_upstream_part_of_debian_versions(debian: str, upstream: str) -> None:
    assert upstream_version(debian) == upstream
