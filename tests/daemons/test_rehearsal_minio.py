"""The rehearsal's MinIO kinds (lab/rehearsal_minio.py) against the MinIO stand-in's S3
(lab/image-files/s3-stand-in.py, moto's S3 with MinIO's health paths), run here from this venv as the
stand-in image runs it: buckets and policies made and removed through S3 as the provider would, a bucket
that holds objects refused on delete, the replace rules the Terraform provider marks, and the admin API's
resources reported as stand-ins."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import free_port
from lab.rehearsal_kinds import RehearsalError, Resource, Saved
from lab.rehearsal_minio import minio_kinds, s3

STAND_IN = Path(__file__).resolve().parents[2] / "lab" / "image-files" / "s3-stand-in.py"
BUCKET = "minio:index/s3Bucket:S3Bucket"
POLICY = "minio:index/s3BucketPolicy:S3BucketPolicy"
USER = "minio:index/iamUser:IamUser"


@pytest.fixture(scope="module")
def provider() -> Iterator[dict[str, object]]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(STAND_IN), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/minio/health/ready", timeout=2) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else "exited"
                assert time.monotonic() < deadline, "the S3 stand-in did not answer its health path"
                time.sleep(0.2)
        yield {"minioServer": f"127.0.0.1:{port}", "minioUser": "samarth-admin", "minioPassword": "a-root-password", "minioSsl": "false"}
    finally:
        server.terminate()
        server.wait(timeout=10)


def resource(type_: str, name: str, inputs: dict[str, object], provider: dict[str, object]) -> Resource:
    return Resource(urn=f"urn:pulumi:lab::samarth-infra::{type_}::{name}", type=type_, name=name, inputs=inputs, provider=provider)


def saved(type_: str, id_: str, outputs: dict[str, object], provider: dict[str, object], inputs: dict[str, object]) -> Saved:
    return Saved(type_, id_, inputs, outputs, "127.0.0.1", provider=dict(provider))


def test_a_bucket_and_its_policy_are_made_through_s3_and_a_bucket_with_objects_is_not_deleted(provider: dict[str, object]) -> None:
    kinds = minio_kinds()
    bucket_inputs: dict[str, object] = {"bucket": "doc-generator", "acl": "private"}
    id_, outputs = kinds[BUCKET].create(resource(BUCKET, "bucket", bucket_inputs, provider))
    assert (id_, outputs["bucket"]) == ("doc-generator", "doc-generator")
    client = s3(provider)
    assert "doc-generator" in {b["Name"] for b in client.list_buckets()["Buckets"]}

    download = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]},
                                                       "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::doc-generator/*"]}]}
    policy_inputs: dict[str, object] = {"bucket": "doc-generator", "policy": json.dumps(download)}
    policy_id, _ = kinds[POLICY].create(resource(POLICY, "policy", policy_inputs, provider))
    assert json.loads(client.get_bucket_policy(Bucket="doc-generator")["Policy"]) == download

    client.put_object(Bucket="doc-generator", Key="letter.pdf", Body=b"%PDF")
    with pytest.raises(RehearsalError, match="delete bucket doc-generator"):
        kinds[BUCKET].delete(saved(BUCKET, id_, outputs, provider, bucket_inputs))
    client.delete_object(Bucket="doc-generator", Key="letter.pdf")
    kinds[POLICY].delete(saved(POLICY, policy_id, {}, provider, policy_inputs))
    kinds[BUCKET].delete(saved(BUCKET, id_, outputs, provider, bucket_inputs))
    assert "doc-generator" not in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_a_bucket_on_a_server_that_does_not_answer_fails_the_rehearsal_naming_the_server() -> None:
    gone: dict[str, object] = {"minioServer": f"127.0.0.1:{free_port()}", "minioUser": "samarth-admin", "minioPassword": "a-root-password"}
    with pytest.raises(RehearsalError, match=r"MinIO at 127\.0\.0\.1:\d+: create bucket doc-generator"):
        minio_kinds()[BUCKET].create(resource(BUCKET, "bucket", {"bucket": "doc-generator"}, gone))


def test_what_replaces_is_what_the_terraform_provider_marks_force_new() -> None:
    kinds = minio_kinds()
    assert kinds[BUCKET].replaces({"bucket", "acl"}) == {"bucket"}
    assert kinds[BUCKET].replaces({"acl", "objectLocking"}) == set()
    assert kinds[POLICY].replaces({"policy"}) == set()
    assert kinds[USER].replaces({"secret"}) == set()
    assert kinds[USER].replaces({"name", "secret"}) == {"name"}


def test_the_admin_apis_resources_are_stand_ins_that_hand_on_their_inputs(provider: dict[str, object]) -> None:
    user = minio_kinds()[USER]
    assert user.outcome == "stand-in" and "admin API" in user.note
    id_, _ = user.create(resource(USER, "backups-db1-user", {"name": "samarth-backups-db1", "secret": "s"}, provider))
    assert id_ == "samarth-backups-db1"
