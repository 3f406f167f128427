"""How the rehearsal (lab/rehearsal.py) performs each resource type, as its provider at the pinned version
would: the operation, its outputs, and which input changes replace rather than update.

- ``command:remote:Command`` (pulumi-command 1.2.1, provider/pkg/provider/remote/): over SSH to the
  connection's host as its user, the host key pinned (``hostKey``), ``stdin`` on the session's standard
  input; create runs ``create``, an update runs ``update`` or else ``create``, delete runs ``delete`` with
  the inputs the resource was created with; only ``triggers`` replaces (common/inputs.go:
  ``provider:"replaceOnChanges"``); stdout and stderr are the outputs, one trailing newline trimmed
  (remote/commandOutputs.go). The previous output is offered as PULUMI_COMMAND_STDOUT/STDERR with
  ``session.Setenv``, which Debian's sshd refuses (AcceptEnv LANG LC_*) and the provider then only logs: the
  rehearsal does not offer it.
- ``random:`` and ``tls:`` resources are generated here, for real; any input change replaces them (every
  attribute of the random and tls providers' resources forces a new resource).
- ``docker:`` resources run on the machine's dockerd (``docker_for``), not through the provider's SSH
  connection; their operations are those of ``lab/rehearsal_docker.py``.
- ``vault:`` resources go to the rehearsed OpenBao's API (lab/rehearsal_vault.py).
- ``minio:`` resources go to the MinIO stand-in's S3 the rehearsal deployed (lab/rehearsal_minio.py).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import secrets
import string
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.stand_ins import declared_script

from .core import LabError


class RehearsalError(LabError):
    """A registration the rehearsal could not perform: the rehearsal fails, as ``pulumi up`` would."""


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]  # revealed: secrets in plain text
    provider: Mapping[str, Any] = field(default_factory=dict)  # the provider configuration's inputs


@dataclass
class Saved:
    """A resource as the state keeps it."""

    type: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    server: str
    protect: bool = False
    retain_on_delete: bool = False
    provider: dict[str, Any] = field(default_factory=dict)  # its provider's configuration, to delete it with


class Kind:
    """How one resource type is performed."""

    outcome = "executed"
    note = ""

    def replaces(self, changed: set[str]) -> set[str]:
        """Of the inputs that ``changed``, those that replace the resource rather than update it."""
        return changed

    def server(self, resource: Resource) -> str:
        return ""

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        raise RehearsalError(f"{resource.urn}: {resource.type} has no update")

    def delete(self, old: Saved) -> None:
        """Generated values vanish with the state entry: nothing to do."""


def _trimmed(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


class RemoteCommand(Kind):
    def __init__(self, pulls: Callable[[str, str], None] = lambda server, script: None) -> None:
        # What the server's daemon would pull for a script that runs an image by its pin (lego, restic):
        # called with the server and the script before it runs.
        self.pulls = pulls
        # SSH sessions open now, and the most at once, per server: sshd's MaxStartups counts them.
        self.open: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self._count = threading.Lock()

    @contextlib.contextmanager
    def _session(self, server: str) -> Iterator[None]:
        with self._count:
            self.open[server] = self.open.get(server, 0) + 1
            self.most_at_once[server] = max(self.most_at_once.get(server, 0), self.open[server])
        try:
            yield
        finally:
            with self._count:
                self.open[server] -= 1

    def replaces(self, changed: set[str]) -> set[str]:
        return changed & {"triggers"}

    def server(self, resource: Resource) -> str:
        return str(resource.inputs["connection"]["host"])

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        outputs = self._run(resource.urn, resource.inputs, resource.inputs.get("create"))
        return f"{resource.name}-{secrets.token_hex(4)}", outputs

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        command = resource.inputs.get("update") or resource.inputs.get("create")
        return self._run(resource.urn, resource.inputs, command)

    def delete(self, old: Saved) -> None:
        self._run(old.id, old.inputs, old.inputs.get("delete"))

    def _run(self, urn: str, inputs: Mapping[str, Any], command: Optional[str]) -> dict[str, Any]:
        if not command:
            return {"stdout": "", "stderr": ""}
        connection = inputs["connection"]
        self.pulls(str(connection["host"]), command)
        if connection.get("proxy"):
            raise RehearsalError(f"{urn}: the rehearsal reaches servers directly (the lab stack has no jump host)")
        if inputs.get("environment"):
            raise RehearsalError(f"{urn}: `environment` needs AcceptEnv on the server's sshd, which Debian's refuses")
        with tempfile.TemporaryDirectory(prefix="rehearsal-ssh-") as work:
            argv = ["ssh", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                    "-o", f"ConnectTimeout={int(connection.get('perDialTimeout') or 15)}",
                    "-p", str(int(connection.get("port") or 22))]
            if connection.get("hostKey"):
                known_hosts = Path(work) / "known_hosts"
                port = int(connection.get("port") or 22)
                name = connection["host"] if port == 22 else f"[{connection['host']}]:{port}"
                known_hosts.write_text(f"{name} {connection['hostKey']}\n")
                argv += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
            else:
                argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            if connection.get("privateKey"):
                key = Path(work) / "key"
                key.touch(mode=0o600)
                key.write_text(connection["privateKey"])
                argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
            argv += [f"{connection.get('user') or 'root'}@{connection['host']}", command]
            with self._session(str(connection["host"])):
                result = subprocess.run(argv, input=inputs.get("stdin") or "", capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            script = declared_script({"create": command}) or "the command"
            tail = "\n".join(result.stderr.strip().splitlines()[-12:])
            raise RehearsalError(f"{urn}: {script} exited {result.returncode} on {connection['host']}:\n{tail}")
        return {"stdout": _trimmed(result.stdout), "stderr": _trimmed(result.stderr)}


class RandomPassword(Kind):
    """terraform-provider-random's random_password: upper, lower, numeric and special characters (or
    ``overrideSpecial``), at least ``min*`` of each, and a bcrypt hash of the result."""

    SPECIAL = "!@#$%&*()-_=+[]{}<>:?"

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        length = int(spec.get("length", 16))
        classes = {
            "upper": (string.ascii_uppercase, spec.get("upper", True), int(spec.get("minUpper", 0))),
            "lower": (string.ascii_lowercase, spec.get("lower", True), int(spec.get("minLower", 0))),
            "numeric": (string.digits, spec.get("numeric", True), int(spec.get("minNumeric", 0))),
            "special": (spec.get("overrideSpecial") or self.SPECIAL, spec.get("special", True), int(spec.get("minSpecial", 0))),
        }
        chars = [secrets.choice(pool) for pool, on, minimum in classes.values() if on for _ in range(minimum)]
        alphabet = "".join(pool for pool, on, _ in classes.values() if on)
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        secrets.SystemRandom().shuffle(chars)
        result = "".join(chars)
        return "none", {"result": result, "bcryptHash": bcrypt.hashpw(result.encode(), bcrypt.gensalt(10)).decode()}


class RandomBytes(Kind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        raw = secrets.token_bytes(int(resource.inputs["length"]))
        return "none", {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _subject(subject: Mapping[str, Any]) -> x509.Name:
    names = {"commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME,
             "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME, "country": NameOID.COUNTRY_NAME}
    return x509.Name([x509.NameAttribute(oid, str(subject[key])) for key, oid in names.items() if subject.get(key)])


_KEY_USES = {"digital_signature": "digital_signature", "key_encipherment": "key_encipherment",
             "cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}
_EXTENDED_USES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _certificate(subject: x509.Name, public_key: Any, issuer: x509.Name, signing_key: Any, spec: Mapping[str, Any],
                 sans: Optional[x509.SubjectAlternativeName] = None) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    uses = set(spec.get("allowedUses") or [])
    usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    usage |= {_KEY_USES[use]: True for use in uses if use in _KEY_USES}
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(hours=float(spec.get("validityPeriodHours", 24))))
               .add_extension(x509.BasicConstraints(ca=bool(spec.get("isCaCertificate")), path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True))
    extended = [_EXTENDED_USES[use] for use in uses if use in _EXTENDED_USES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


class PrivateKey(Kind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        algorithm = resource.inputs.get("algorithm", "RSA")
        key: Any
        if algorithm == "ECDSA":
            curve = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
            key = ec.generate_private_key(curve[resource.inputs.get("ecdsaCurve", "P224")])
            traditional = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
        elif algorithm == "ED25519":
            key = ed25519.Ed25519PrivateKey.generate()
            traditional = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        else:
            key = rsa.generate_private_key(65537, int(resource.inputs.get("rsaBits", 2048)))
            traditional = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
        public = key.public_key()
        return "none", {
            "privateKeyPem": traditional.decode(),
            "privateKeyPemPkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()).decode(),
            "publicKeyPem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "publicKeyOpenssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + "\n",
        }


class SelfSignedCert(Kind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        key = _load_key(resource.inputs["privateKeyPem"])
        subject = _subject(resource.inputs.get("subject") or {})
        return "none", {"certPem": _certificate(subject, key.public_key(), subject, key, resource.inputs)}


class CertRequest(Kind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        key = _load_key(resource.inputs["privateKeyPem"])
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in resource.inputs.get("dnsNames") or []]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in resource.inputs.get("ipAddresses") or []]
        builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(resource.inputs.get("subject") or {}))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        request = builder.sign(key, hashes.SHA256())
        return "none", {"certRequestPem": request.public_bytes(serialization.Encoding.PEM).decode()}


class LocallySignedCert(Kind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        request = x509.load_pem_x509_csr(spec["certRequestPem"].encode())
        ca = x509.load_pem_x509_certificate(spec["caCertPem"].encode())
        try:
            sans: Optional[x509.SubjectAlternativeName] = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = None
        pem = _certificate(request.subject, request.public_key(), ca.subject, _load_key(spec["caPrivateKeyPem"]), spec, sans)
        return "none", {"certPem": pem}


def kinds(provider_kinds: Mapping[str, Kind]) -> dict[str, Kind]:
    """Every resource type the program registers -> how the rehearsal performs it."""
    return {
        "command:remote:Command": RemoteCommand(),
        "random:index/randomPassword:RandomPassword": RandomPassword(),
        "random:index/randomBytes:RandomBytes": RandomBytes(),
        "tls:index/privateKey:PrivateKey": PrivateKey(),
        "tls:index/selfSignedCert:SelfSignedCert": SelfSignedCert(),
        "tls:index/certRequest:CertRequest": CertRequest(),
        "tls:index/locallySignedCert:LocallySignedCert": LocallySignedCert(),
        **provider_kinds,
    }
