"""docs/upstreams.md covers every pin, and what the program installs holds to the record.

- every ``versions`` key (nested ones as ``versions.a.b``) has a row, and prod's pin is the row's;
- a row naming a vulnerability carries a decision;
- PostHog: the compose definition the install uses (posthog-deploy's file and Dockerfiles at the pinned
  commit, kept as fixtures, plus the program's override) pulls no image from a withdrawn namespace,
  none without a pinned version, and none the record lacks; the same check fails on the old setup;
- the registry's rendered config uses only keys of the 3.x configuration reference (fixture);
- every row cites a file read at a version, the record and the fixture directories name each other, each
  fixture directory is for a version prod pins, and the build files kept are those of the pinned release.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import Versions
from components.services.mirror import component as mirror
from components.services.mirror.settings import DOCKER_HUB, MirrorSettings
from components.services.observability.component import posthog_release
from components.services.observability.settings import PostHogSettings
from components.services.registry import component as registry
from tests.support.compose_model import POSTHOG_DEPLOY, posthog_compose
from tools import upstreams
from tools.offline import read_stack_values, stack_file

FIXTURES = Path(__file__).resolve().parents[1] / "support" / "fixtures" / "upstreams"
POSTHOG_COMMIT = "063b9643fe43118384c7479911b08857dcdbd9a5"

# Namespaces whose images are gone or frozen without fixes: bitnami removed versioned tags from
# docker.io/bitnami and froze bitnamilegacy (bitnami/containers#83267); MinIO deleted docker.io/minio.
WITHDRAWN = ("bitnami/", "bitnamilegacy/", "docker.io/bitnami/", "docker.io/bitnamilegacy/", "minio/", "docker.io/minio/")


def record_rows() -> dict[str, list[str]]:
    """The record's rows as lists of cells (tools/upstreams.py reads the table)."""
    return {key: [row.key, row.image, f"`{row.pinned}`", row.read, row.contract, row.status, row.checked] for key, row in upstreams.rows().items()}


def _keys(model: type[Any], prefix: str = "versions") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}"
        nested = field.annotation
        if isinstance(nested, type) and hasattr(nested, "model_fields"):
            keys += _keys(nested, key)
        else:
            keys.append(key)
    return keys


def _prod_pins() -> dict[str, str]:
    values, _ = read_stack_values(stack_file("prod"))
    return upstreams.pins(json.loads(values["samarth-infra:versions"]))


def test_every_versions_key_has_a_row_with_prods_pin() -> None:
    rows = record_rows()
    pins = _prod_pins()
    keys = _keys(Versions)
    assert "versions.posthogImages.kafka" in keys and "versions.postgres" in keys
    missing = [k for k in keys if k not in rows]
    assert not missing, f"docs/upstreams.md has no row for {missing}"
    for key in keys:
        pinned = rows[key][2].strip("`")
        if key in pins:
            assert pinned == pins[key], f"{key}: prod pins {pins[key]!r}, docs/upstreams.md says {pinned!r}"
        else:
            assert pinned == "not pinned", f"{key}: prod does not pin it, the record says {pinned!r}"
        for column, cell in zip(("upstream read", "contract", "support status", "checked"), rows[key][3:], strict=False):
            assert cell, f"{key}: empty {column}"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", rows[key][6]), f"{key}: checked must be a date"


# A row cites a file (a path in backticks) and the version it was read at: a commit, a tag, or the
# official-images commit the record's "Sources" line names.
_CITED_FILE = re.compile(r"`[^`\s]*[/.][^`\s]*`")
_AT_VERSION = re.compile(r"\b[0-9a-f]{7,40}\b|\btag\b|official-images")
_FIXTURE_DIR = re.compile(r"tests/support/fixtures/upstreams/([\w.-]+)")


def test_every_row_cites_a_file_read_at_a_version() -> None:
    assert re.search(r"\*official-images\* = docker-library/official-images at [0-9a-f]{7,40}\b", upstreams.RECORD.read_text())
    for key, row in upstreams.rows().items():
        if row.pinned == "not pinned":
            continue
        assert _CITED_FILE.search(row.read), f"{key}: the upstream read names no file"
        assert _AT_VERSION.search(row.read), f"{key}: the upstream read names no commit or tag"


def test_the_record_and_the_fixture_directories_name_each_other() -> None:
    named = set(_FIXTURE_DIR.findall(upstreams.RECORD.read_text()))
    kept = {path.name for path in FIXTURES.iterdir() if path.is_dir()}
    assert named - kept == set(), "docs/upstreams.md names fixture directories that do not exist"
    assert kept - named == set(), "fixture directories docs/upstreams.md does not say the source of"


def _pinned_versions() -> set[str]:
    """Every prod pin's tag (without a leading v) and commit, as fixture directories spell them."""
    versions = set()
    for pin in _prod_pins().values():
        tag = pin.split("@", 1)[0].rpartition("/")[2].rpartition(":")[2]
        versions.add(tag.removeprefix("v"))
    return versions


def test_each_fixture_directory_is_for_a_version_prod_pins() -> None:
    versions = _pinned_versions()
    for path in FIXTURES.iterdir():
        if path.is_dir():
            version = path.name.rpartition("-")[2].removeprefix("v")
            assert any(v == version or (len(version) >= 7 and v.startswith(version)) for v in versions), (
                f"{path.name}: no prod pin is {version}; re-read the upstream at the pinned release"
            )


def _tag(key: str) -> str:
    return _prod_pins()[key].split("@", 1)[0].rpartition(":")[2]


def test_the_build_files_kept_are_those_of_the_pinned_release() -> None:
    # The registry's library build downloads the release its version names.
    registry_build = (FIXTURES / "distribution-v3.1.1" / "library-image.Dockerfile").read_text()
    assert re.findall(r"version='([^']+)'", registry_build) == [_tag("versions.registry")]
    # goacme/lego is published by goreleaser from the Dockerfile its config names, kept beside it.
    lego = FIXTURES / f"lego-{_tag('versions.lego')}"
    (published,) = yaml.safe_load((lego / "goreleaser.yml").read_text())["dockers_v2"]
    assert published["images"] == ["goacme/lego"] and (lego / published["dockerfile"]).is_file()
    # The published redis image's build steps name the version they built.
    redis_build = (FIXTURES / f"redis-{_tag('versions.redis')}" / "repo-info-7.4.11-amd64.md").read_text()
    assert re.findall(r"^ENV REDIS_VERSION=(\S+)$", redis_build, re.MULTILINE) == [_tag("versions.redis")]


def test_a_named_vulnerability_is_fixed_in_the_pin_or_comes_with_a_decision() -> None:
    named = 0
    for key, cells in record_rows().items():
        if re.search(r"CVE-\d{4}-\d+", cells[5]):
            named += 1
            assert "Decision:" in cells[5] or "fixed in" in cells[5], f"{key}: names a vulnerability without a decision"
    assert named >= 3  # redis, PostHog's Postgres 12, MinIO


# --- PostHog: the compose definition the install would use -------------------------------------------


def compose_images(override: str | None) -> dict[str, str]:
    """Each service's image as the install would run it: its ``image``, or its Dockerfile's FROM."""
    compose = posthog_compose(override)
    images = {}
    for name, service in compose["services"].items():
        if "build" in service:
            dockerfile = POSTHOG_DEPLOY / Path(service["build"]["dockerfile"]).name
            (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
            images[name] = base
        else:
            images[name] = service["image"]
    return images


# A pinned tag names one release: three numbers (1.2.3), MinIO's RELEASE.<date> form, or, for Postgres,
# which numbers its releases major.minor since 10, two; `12-alpine` and ClickHouse's `22.3` are lines.
_RELEASE = re.compile(r"(\d+(?:\.\d+){2,}|RELEASE\.\d{4}-\d{2}-\d{2}T[\d-]+Z)")
_TWO_PART_RELEASES = re.compile(r"^(?:[a-z0-9.-]+(?::\d+)?/)?(?:library/)?postgres:\d{2,}\.\d+(?:-|$)")


def pinned_release(image: str) -> bool:
    reference = image.split("@", 1)[0]
    tag = reference.rsplit("/", 1)[-1].partition(":")[2]
    return "@sha256:" in image or bool(_RELEASE.search(tag)) or bool(_TWO_PART_RELEASES.match(reference))


def image_problems(images: dict[str, str], record: dict[str, list[str]]) -> list[str]:
    recorded = {cells[2].strip("`") for cells in record.values()}
    problems = []
    for service, image in sorted(images.items()):
        if image.startswith(WITHDRAWN):
            problems.append(f"{service}: {image} is from a withdrawn namespace")
        if not pinned_release(image):
            problems.append(f"{service}: {image} has no pinned version tag")
        if image not in recorded:
            problems.append(f"{service}: {image} has no row in docs/upstreams.md")
    return problems


def _prod_release():
    values, _ = read_stack_values(stack_file("prod"))
    versions = Versions.model_validate(json.loads(values["samarth-infra:versions"]))
    settings = PostHogSettings.model_validate(json.loads(values["samarth-infra:observability"])["posthog"])
    return posthog_release(settings, versions.posthog, versions.posthog_images, versions.minio, "10.20.0.10"), versions


@pytest.mark.parametrize(
    "image, pinned",
    [
        ("postgres:12.22-alpine", True),
        ("postgres:16.15", True),
        ("postgres:12-alpine", False),
        ("clickhouse/clickhouse-server:22.3", False),
        ("clickhouse/clickhouse-server:22.3.20.29", True),
        ("redis:6.2.24-alpine", True),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", True),
        ("posthog/posthog:release-1.40.0", True),
        ("zookeeper:3.9", False),
        ("apache/kafka@sha256:" + "a" * 64, True),
    ],
)
def test_what_counts_as_a_pinned_release(image: str, pinned: bool) -> None:
    assert pinned_release(image) is pinned


def test_the_fixture_is_the_pinned_posthog_deploy() -> None:
    release, versions = _prod_release()
    assert versions.posthog == POSTHOG_COMMIT == release.ref


def test_the_old_setup_fails_the_check() -> None:
    problems = image_problems(compose_images(None), record_rows())
    assert "kafka: bitnami/kafka:2.8.1-debian-10-r99 is from a withdrawn namespace" in problems
    assert "object_storage: minio/minio:RELEASE.2022-09-17T00-09-45Z.fips is from a withdrawn namespace" in problems
    assert "db: postgres:12-alpine has no pinned version tag" in problems
    assert "clickhouse: clickhouse/clickhouse-server:22.3 has no pinned version tag" in problems
    assert "redis: redis:6.2.7-alpine has no row in docs/upstreams.md" in problems


def test_posthog_installs_only_pinned_recorded_images_that_exist() -> None:
    release, versions = _prod_release()
    images = compose_images(release.override)
    assert image_problems(images, record_rows()) == []
    assert images["kafka"] == versions.posthog_images.kafka
    assert {images[s] for s in ("web", "worker", "plugins", "asyncmigrationscheck")} == {versions.posthog_images.web}
    assert images["object_storage"] == versions.minio


def test_posthog_override_keeps_what_the_builds_added_and_exposes_only_web() -> None:
    release, _ = _prod_release()
    merged = posthog_compose(release.override)
    # build/Dockerfile.Posthog copied ./compose and ./docker-server; web, the only user of both, mounts
    # them (docker-server as the install's executable copy: tests/unit/test_observability.py).
    dockerfile = (POSTHOG_DEPLOY / "Dockerfile.Posthog").read_text()
    assert "COPY ./compose /compose" in dockerfile and "COPY docker-server /code/bin/docker-server" in dockerfile
    web_targets = {volume.split(":")[1] for volume in merged["services"]["web"]["volumes"]}
    assert {"/compose", "/code/bin/docker-server"} <= web_targets
    # build/Dockerfile.Clickhouse copied files the service mounts anyway.
    clickhouse = merged["services"]["clickhouse"]["volumes"]
    assert "./posthog/docker/clickhouse/config.xml:/etc/clickhouse-server/config.xml" in clickhouse
    published = {name: s.get("ports") for name, s in merged["services"].items() if s.get("ports")}
    assert published == {"web": ["10.20.0.10:8023:8000"]}
    kafka = merged["services"]["kafka"]["environment"]
    assert not [k for k in kafka if k.startswith(("KAFKA_CFG_", "ALLOW_"))]
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    # apache/kafka's launch formats the KRaft storage with CLUSTER_ID and refuses to start without it.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"])
    assert base64.urlsafe_b64decode(kafka["CLUSTER_ID"] + "==") and len(base64.urlsafe_b64decode(kafka["CLUSTER_ID"] + "==")) == 16
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller" and kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert all(s.get("build") is None for s in merged["services"].values())


# --- registry 3.x configuration ---------------------------------------------------------------------


def _paths(document: Any, prefix: str = "") -> set[str]:
    if not isinstance(document, dict):
        return {prefix}
    paths = set()
    for key, value in document.items():
        paths |= _paths(value, f"{prefix}.{key}" if prefix else str(key))
    return paths


def _known(path: str, reference: Any) -> bool:
    node = reference
    for part in path.split("."):
        if not isinstance(node, dict):
            return True  # a free-form map in the reference (log.fields, http.headers)
        if part not in node:
            return False
        node = node[part]
    return True


def test_the_registry_config_uses_only_keys_of_the_3x_reference() -> None:
    reference = yaml.safe_load((FIXTURES / "distribution-v3.1.1" / "configuration-options.yml").read_text())
    rendered = yaml.safe_load(registry.render_config("https://registry.example.org", "s" * 48))
    unknown = sorted(p for p in _paths(rendered) if not _known(p, reference))
    assert unknown == []
    # And the check is not vacuous: a 2.x-only or misspelt key is caught.
    assert not _known("storage.filesystem.rootdir", reference)
    assert not _known("http.tls.letsencrypt.bogus", reference)


def test_the_mirror_config_is_proxy_mode_with_keys_of_the_3x_reference() -> None:
    reference = yaml.safe_load((FIXTURES / "distribution-v3.1.1" / "configuration-options.yml").read_text())
    settings = MirrorSettings.model_validate({"hubUsername": "samarthci"})
    token = "dckr_pat_offline-test-token-not-real"
    rendered = yaml.safe_load(mirror.render_config(settings, "s" * 48, token))
    assert sorted(p for p in _paths(rendered) if not _known(p, reference)) == []
    assert rendered["proxy"] == {"remoteurl": DOCKER_HUB, "ttl": "168h", "username": "samarthci", "password": token}
    # The scheduler removes expired content only with deletes enabled (distribution's mirror recipe).
    assert rendered["storage"]["delete"] == {"enabled": True}
    anonymous = yaml.safe_load(mirror.render_config(MirrorSettings(), "s" * 48))
    assert anonymous["proxy"] == {"remoteurl": DOCKER_HUB, "ttl": "168h"}


def test_the_registry_container_names_its_config_file_as_3x_images_expect() -> None:
    dockerfile = (FIXTURES / "distribution-v3.1.1" / "library-image.Dockerfile").read_text()
    assert 'CMD ["/etc/distribution/config.yml"]' in dockerfile
    assert registry.CONFIG_PATH == "/etc/distribution/config.yml"


# Pins that would be refused: a known vulnerability, no maintenance, or outside FusionAuth's support.
FLAGGED = {
    "versions.postgres": "postgres:16.10",
    "versions.redis": "redis:7.4.5",
    "versions.registry": "registry:2.8.3",
    "versions.nginx": "nginx:1.28.0",
    "versions.elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch:8.15.5",
}


@pytest.mark.parametrize("key", sorted(FLAGGED))
def test_prod_no_longer_pins_a_flagged_release(key: str) -> None:
    assert _prod_pins().get(key) != FLAGGED[key]


def test_the_plan_lists_every_pin_with_its_record() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    versions = json.loads(values["samarth-infra:versions"])
    lines = upstreams.plan_lines(versions)
    assert lines[0].startswith("== Pins")
    record = upstreams.rows()
    assert f"  redis: redis:7.4.11  (checked {record['versions.redis'].checked}; decision recorded)" not in lines
    assert f"  redis: redis:7.4.11  (checked {record['versions.redis'].checked})" in lines
    assert f"  posthogImages.kafka: apache/kafka:3.9.1  (checked {record['versions.posthogImages.kafka'].checked})" in lines
    assert len(lines) == 1 + len(_prod_pins())
    drifted = upstreams.plan_lines({**versions, "redis": "redis:7.4.12", "grafana": "grafana/grafana:11.2.0"})
    assert "  redis: redis:7.4.12  (docs/upstreams.md records redis:7.4.11: re-check and update the row)" in drifted
    assert "  grafana: grafana/grafana:11.2.0  (NO ROW in docs/upstreams.md)" in drifted
