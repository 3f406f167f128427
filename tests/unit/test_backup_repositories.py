"""The repositories' access rules as the program declares them, under Pulumi's mocks. The S3 drill
(tests/lab/test_backups_lab.py) runs against moto, which does not enforce IAM policies; what confines each
server's MinIO user to its own prefix is this policy, checked here statement by statement (MinIO's
policy-based access control follows AWS IAM's policy language: docs/backups.md)."""

from __future__ import annotations

import json

from tools.offline import ProgramRun

S3_SERVERS = ("db1", "db2", "swarm-master")


def test_each_minio_user_may_touch_only_its_own_prefix(prod: ProgramRun) -> None:
    for server in S3_SERVERS:
        policy = json.loads(prod.named("minio:index/iamPolicy:IamPolicy", f"backups-{server}-policy").plain_inputs["policy"])
        statements = {tuple(s["Action"]): s for s in policy["Statement"]}
        assert all(s["Effect"] == "Allow" for s in policy["Statement"])
        assert set(statements) == {("s3:GetBucketLocation",), ("s3:ListBucket",), ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")}
        objects = statements[("s3:GetObject", "s3:PutObject", "s3:DeleteObject")]
        assert objects["Resource"] == [f"arn:aws:s3:::samarth-backups/{server}/*"]
        listing = statements[("s3:ListBucket",)]
        assert listing["Resource"] == ["arn:aws:s3:::samarth-backups"]
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{server}/*", server]}}
        user = prod.named("minio:index/iamUser:IamUser", f"backups-{server}-user").plain_inputs
        attachment = prod.named("minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment", f"backups-{server}-attachment").plain_inputs
        assert user["name"] == attachment["userName"] == f"samarth-backups-{server}"
        assert attachment["policyName"] == f"samarth-backups-{server}"
    names = {r.name for r in prod.of_type("minio:index/iamUser:IamUser") if r.name.startswith("backups-")}
    assert names == {f"backups-{s}-user" for s in S3_SERVERS}, "the application server's repository is SFTP"
