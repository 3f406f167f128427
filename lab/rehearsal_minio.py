"""The MinIO provider's resources, performed by the rehearsal (lab/rehearsal.py) against the MinIO stand-in
the rehearsal deployed (lab/image-files/minio.Dockerfile: moto's S3, in memory, every access key accepted):
buckets and bucket policies through S3 as the provider (pulumi-minio 0.17.1, bridging
aminueza/terraform-provider-minio v1.20.1 by its provider/go.mod) calls it, with the provider's ``minioServer``, ``minioUser`` and
``minioPassword``. MinIO's admin API (users, policies and their attachments) has no stand-in: those
resources are answered with the outputs the program reads, and reported as stand-ins.

What replaces rather than updates, as the Terraform provider's schema marks it (ForceNew, in
minio/resource_minio_*.go at v1.20.1): a bucket's ``bucket`` and ``bucketPrefix``; a bucket policy's
``bucket``; a user's or a policy's ``name`` (and ``namePrefix``); an attachment's ``userName`` and
``policyName``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import boto3
import botocore.config
import botocore.exceptions

from harness.stand_ins import stand_in_outputs

from .rehearsal_kinds import Kind, RehearsalError, Resource, Saved


def s3(provider: Mapping[str, Any]) -> Any:
    """An S3 client for the provider's server, path-style as MinIO is addressed. A provider's
    configuration reaches the engine as strings (``minioSsl: "false"``)."""
    scheme = "https" if str(provider.get("minioSsl")).lower() == "true" else "http"
    return boto3.client(
        "s3", endpoint_url=f"{scheme}://{provider['minioServer']}", region_name=str(provider.get("minioRegion") or "us-east-1"),
        aws_access_key_id=str(provider["minioUser"]), aws_secret_access_key=str(provider["minioPassword"]),
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=10, read_timeout=30),
    )


def _called(provider: Mapping[str, Any], what: str, call: Any, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RehearsalError(f"MinIO at {provider.get('minioServer')}: {what}: {exc}") from None


class MinioKind(Kind):
    REPLACED_BY: frozenset[str] = frozenset()

    def server(self, resource: Resource) -> str:
        return str(resource.provider.get("minioServer", "")).rsplit(":", 1)[0]

    def replaces(self, changed: set[str]) -> set[str]:
        return changed & self.REPLACED_BY


class Bucket(MinioKind):
    REPLACED_BY = frozenset({"bucket", "bucketPrefix"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        name = str(resource.inputs["bucket"])
        client = s3(resource.provider)
        _called(resource.provider, f"create bucket {name}", client.create_bucket, Bucket=name)
        return name, {"bucket": name, "arn": f"arn:aws:s3:::{name}", "bucketDomainName": f"{resource.provider['minioServer']}/{name}"}

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        return old.outputs  # the ACL and object locking change in place; the program's never change

    def delete(self, old: Saved) -> None:
        # Refused while the bucket holds objects, as the provider refuses without forceDestroy.
        _called(old.provider, f"delete bucket {old.id}", s3(old.provider).delete_bucket, Bucket=old.id)


class BucketPolicy(MinioKind):
    REPLACED_BY = frozenset({"bucket"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        return str(resource.inputs["bucket"]), self.update(resource, None)

    def update(self, resource: Resource, old: Optional[Saved]) -> dict[str, Any]:
        bucket = str(resource.inputs["bucket"])
        _called(resource.provider, f"put the policy of {bucket}", s3(resource.provider).put_bucket_policy,
                Bucket=bucket, Policy=str(resource.inputs["policy"]))
        return {}

    def delete(self, old: Saved) -> None:
        _called(old.provider, f"delete the policy of {old.id}", s3(old.provider).delete_bucket_policy, Bucket=old.id)


class AdminStandIn(MinioKind):
    """MinIO's admin API: the S3 stand-in has none, and accepts every access key."""

    outcome = "stand-in"
    note = "MinIO's admin API has no stand-in: the user or policy is not made, and the S3 stand-in accepts every key"

    def replaces(self, changed: set[str]) -> set[str]:
        return changed & {"name", "namePrefix", "userName", "policyName"}

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        id_ = str(resource.inputs.get("name") or resource.name)
        return id_, stand_in_outputs(resource.type, resource.name, resource.inputs)

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        return stand_in_outputs(resource.type, resource.name, resource.inputs)


def minio_kinds() -> dict[str, Kind]:
    admin = AdminStandIn()
    return {
        "minio:index/s3Bucket:S3Bucket": Bucket(),
        "minio:index/s3BucketPolicy:S3BucketPolicy": BucketPolicy(),
        "minio:index/iamPolicy:IamPolicy": admin,
        "minio:index/iamUser:IamUser": admin,
        "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment": admin,
    }
