"""MinIO on the application server, and the doc-generator bucket, policy and user inside it.

The team set MinIO up by hand with `mc` (alias, `mb`, `admin policy create`, `anonymous set download`);
here the same state is declared through the MinIO provider, which talks to the S3 API on the
server's private address with the generated root credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_docker as docker
import pulumi_minio as minio
import pulumi_random as random

from components.platform.host.component import Host
from components.platform.host.containers import Healthcheck, data_volume, pinned_image, private_port, service_container
from components.shared.publishing import CredentialBook

from .settings import API_PORT, BUCKET, CONSOLE_PORT, MEMORY_MIB

POLICY_FILE = Path(__file__).parent / "doc-generator.json"


def anonymous_download_policy(bucket: str) -> dict[str, Any]:
    """What `mc anonymous set download` grants: read objects, locate the bucket; no listing."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetBucketLocation"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


@dataclass(frozen=True)
class StorageArgs:
    host: Host
    image: str
    book: CredentialBook


class Storage(pulumi.ComponentResource):
    """MinIO with its data on a protected volume, and doc-generator's bucket, policy and user."""

    endpoint: pulumi.Output[str]
    bucket: minio.S3Bucket
    # For other components' buckets and users (the backup repositories).
    provider: minio.Provider

    def __init__(self, name: str, args: StorageArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:storage:Storage", name, None, opts)
        host = args.host

        root_user = random.RandomPassword(f"{name}-root-user", length=20, special=False, opts=pulumi.ResourceOptions(parent=self))
        root_password = random.RandomPassword(f"{name}-root-password", length=40, special=False, opts=pulumi.ResourceOptions(parent=self))

        image = pinned_image(host, self, f"{name}-image", args.image)
        data = data_volume(host, self, f"{name}-data", f"{name}-data")
        container = service_container(
            host,
            self,
            f"{name}-container",
            name=name,
            image=image,
            memory_mib=MEMORY_MIB,
            # Recent MinIO images ship without curl; `mc ready` is the image's own readiness probe.
            healthcheck=Healthcheck(tests=["CMD", "mc", "ready", "local"], start_period="20s", retries=5),
            ports=[private_port(host, port) for port in (API_PORT, CONSOLE_PORT)],
            command=["server", "/data", "--address", f":{API_PORT}", "--console-address", f":{CONSOLE_PORT}"],
            envs=pulumi.Output.secret(
                pulumi.Output.all(root_user.result, root_password.result).apply(
                    lambda creds: [f"MINIO_ROOT_USER={creds[0]}", f"MINIO_ROOT_PASSWORD={creds[1]}"]
                )
            ),
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path="/data")],
            # The provider below configures MinIO right after: wait until it answers.
            wait=True,
            wait_timeout=120,
        )

        self.endpoint = pulumi.Output.concat(host.private_ip, f":{API_PORT}")
        admin_user: pulumi.Output[str] = pulumi.Output.secret(root_user.result)
        admin_password: pulumi.Output[str] = pulumi.Output.secret(root_password.result)
        self.provider = provider = minio.Provider(
            f"{name}-minio",
            minio_server=self.endpoint,
            minio_user=admin_user,
            minio_password=admin_password,
            minio_ssl=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[container]),
        )
        in_minio = pulumi.ResourceOptions(parent=self, provider=provider)

        self.bucket = minio.S3Bucket(f"{name}-{BUCKET}", bucket=BUCKET, acl="private", opts=in_minio)
        minio.S3BucketPolicy(
            f"{name}-{BUCKET}-anonymous-download",
            bucket=self.bucket.bucket,
            policy=json.dumps(anonymous_download_policy(BUCKET)),
            opts=in_minio,
        )
        policy = minio.IamPolicy(f"{name}-{BUCKET}-policy", name=BUCKET, policy=POLICY_FILE.read_text(), opts=in_minio)
        secret = random.RandomPassword(f"{name}-{BUCKET}-secret", length=40, special=False, opts=pulumi.ResourceOptions(parent=self))
        user = minio.IamUser(f"{name}-{BUCKET}-user", name=BUCKET, secret=secret.result, opts=in_minio)
        minio.IamUserPolicyAttachment(
            f"{name}-{BUCKET}-attachment", user_name=user.name, policy_name=policy.name, opts=in_minio
        )

        args.book.add(
            BUCKET,
            {
                "MINIO_URL": self.endpoint,
                "MINIO_USER": user.name,
                "MINIO_PASSWORD": pulumi.Output.secret(secret.result),
            },
        )
        self.exports = {"minioEndpoint": self.endpoint}
        self.register_outputs({"endpoint": self.endpoint, "bucket": self.bucket.bucket})
