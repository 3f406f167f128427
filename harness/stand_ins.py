"""Stand-ins for what only real servers, providers and an operator would provide, so the program runs
under Pulumi's mocks (tools/offline.py, for the tests and tools.plan): the outputs the program reads
back (a command's stdout, generated passwords and keys, image IDs) and the secure config values.

A stand-in is chosen by resource type and, for remote commands, by the script the command declares it
runs (``SAMARTH_SCRIPT`` in the header components.shell.render writes), never by resource name: a
renamed resource keeps its stand-in, and a new script gets none until it declares one here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any, Optional

# Stand-ins for the values an operator sets with `pulumi config set --secret` (not a real key).
TEST_SECRETS = {
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\noffline-test-key-not-real\n-----END OPENSSH PRIVATE KEY-----\n",
}

StandIn = Callable[[str, dict[str, Any]], dict[str, Any]]
# (resource type, script name or None for any) -> the outputs to report.
_STAND_INS: dict[tuple[str, Optional[str]], StandIn] = {}
_SCRIPT = re.compile(r"\ASAMARTH_SCRIPT=(\S+)")


def fake_outputs(type_: str, script: Optional[str] = None) -> Callable[[StandIn], StandIn]:
    def register(fn: StandIn) -> StandIn:
        _STAND_INS[(type_, script)] = fn
        return fn

    return register


def declared_script(inputs: Mapping[str, Any]) -> Optional[str]:
    """The script a remote command runs, as its rendered header names it (``swarm-init[master]`` ->
    ``swarm-init``), or None for a command not rendered from a script file (components.shared.shell)."""
    match = _SCRIPT.match(str(inputs.get("create") or ""))
    return shlex.split(match.group(1))[0].split("[", 1)[0] if match else None


def stand_in_outputs(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs a real provider would report that the program reads, for a resource of ``type_``
    registered with (revealed) ``inputs``; empty when the program reads none."""
    script = declared_script(inputs) if type_ == "command:remote:Command" else None
    fake = _STAND_INS.get((type_, script))
    return fake(name, inputs) if fake else {}


def _token(name: str, length: int = 24) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


@fake_outputs("random:index/randomPassword:RandomPassword")
def _password(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    value = f"pw{_token(name)}"[: int(inputs.get("length") or 24)]
    return {"result": value, "bcryptHash": f"$2a$10${_token(name + 'bcrypt', 53)}"}


@fake_outputs("random:index/randomBytes:RandomBytes")
def _bytes(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    raw = hashlib.sha256(name.encode()).digest()[: int(inputs.get("length") or 32)]
    return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}


@fake_outputs("docker:index/remoteImage:RemoteImage")
def _image(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    # What a pull reports: the image's content ID, which containers take as their `image`.
    return {"imageId": f"sha256:{_token(str(inputs.get('name')), 64)}", "repoDigest": f"{inputs.get('name')}@sha256:{_token(name, 64)}"}


@fake_outputs("command:remote:Command", script="preflight")
def _preflight(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"stdout": json.dumps({"dockerVersion": "26.1.5", "memoryMib": 65536, "cpus": 16}), "stderr": ""}




@fake_outputs("command:remote:Command", script="backup-ssh-key")
def _backup_ssh_key(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What backup-ssh-key.sh prints: the public half of the key it made (a stand-in, distinct per server)."""
    server = re.search(r"^SERVER=(\S+)$", str(inputs.get("create") or ""), re.M)
    who = server.group(1) if server else name
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(name.encode()).digest()).decode()
    return {"stdout": f"ssh-ed25519 {blob} samarth-backup@{who}\n", "stderr": ""}


@fake_outputs("command:remote:Command", script="swarm-init")
def _swarm_init(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the init script prints: cluster facts and both join tokens (secret via additionalSecretOutputs)."""
    return {
        "stdout": json.dumps(
            {
                "clusterId": _token(name + "cluster", 25),
                "nodeId": _token(name + "node", 25),
                "managerAddress": "10.0.0.1:2377",
                "workerToken": f"SWMTKN-1-{_token(name + 'ca', 50)}-{_token(name + 'worker', 25)}",
                "managerToken": f"SWMTKN-1-{_token(name + 'ca', 50)}-{_token(name + 'manager', 25)}",
            }
        ),
        "stderr": "",
    }


def _pem(kind: str, name: str) -> str:
    """A stand-in PEM block, distinct per resource (mocks make no real keys or certificates)."""
    body = base64.b64encode(hashlib.sha256(f"{kind}-{name}".encode()).digest() * 2).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


@fake_outputs("tls:index/privateKey:PrivateKey")
def _tls_private_key(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"privateKeyPem": _pem("PRIVATE KEY", name), "publicKeyPem": _pem("PUBLIC KEY", name)}


@fake_outputs("tls:index/selfSignedCert:SelfSignedCert")
@fake_outputs("tls:index/locallySignedCert:LocallySignedCert")
def _tls_certificate(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"certPem": _pem("CERTIFICATE", name)}


@fake_outputs("tls:index/certRequest:CertRequest")
def _tls_request(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"certRequestPem": _pem("CERTIFICATE REQUEST", name)}


@fake_outputs("command:remote:Command", script="vault-init")
def _vault_init(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What `vault operator init -format=json` prints, for the shares and threshold the script asks for."""
    create = str(inputs.get("create") or "")
    shares, threshold = (int(m.group(1)) for m in re.finditer(r"^KEY_(?:SHARES|THRESHOLD)='?(\d+)", create, re.M))
    keys = [hashlib.sha256(f"{name}-unseal-{i}".encode()).digest() for i in range(shares)]
    document = {
        "unseal_keys_b64": [base64.b64encode(k).decode() for k in keys],
        "unseal_keys_hex": [k.hex() for k in keys],
        "unseal_shares": shares,
        "unseal_threshold": threshold,
        "recovery_keys_b64": [],
        "recovery_keys_hex": [],
        "recovery_keys_shares": 0,
        "recovery_keys_threshold": 0,
        "root_token": f"hvs.{_token(name + 'root', 24)}",
    }
    return {"stdout": json.dumps(document, indent=2), "stderr": ""}


@fake_outputs("vault:appRole/authBackendRole:AuthBackendRole")
def _approle_role(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"roleId": f"{_token(name + 'role', 8)}-{_token(name + 'role2', 4)}-{_token(name + 'role3', 12)}"}


@fake_outputs("vault:appRole/authBackendRoleSecretId:AuthBackendRoleSecretId")
def _approle_secret_id(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"secretId": f"{_token(name + 'secret', 8)}-{_token(name + 'secret2', 4)}-{_token(name + 'secret3', 12)}", "accessor": _token(name + "accessor", 36)}
