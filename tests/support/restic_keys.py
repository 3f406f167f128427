"""A restic repository's key re-wrapped with cheap scrypt parameters, for tests that run restic often.

`restic init` calibrates its key derivation to take half a second, and every restic command pays it
again to open the repository: a test that runs restic a dozen times spends most of its time there.
The repository, its master key and every command stay real; only the test password's key file is
re-encrypted with a small scrypt cost, in restic's key format (restic 0.14, `internal/crypto`: scrypt
gives 32 bytes of AES-256-CTR key and a 32-byte Poly1305-AES MAC key K || R; the data is
IV || ciphertext || MAC over the ciphertext). AES comes from the openssl command.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

CHEAP = {"N": 1024, "r": 8, "p": 1}
_POLY1305_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF


def _aes(mode: str, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    argv = ["openssl", "enc", f"-aes-{len(key) * 8}-{mode}", "-nosalt", "-nopad", "-K", key.hex()]
    if iv is not None:
        argv += ["-iv", iv.hex()]
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout


def _poly1305_aes(k: bytes, r: bytes, nonce: bytes, message: bytes) -> bytes:
    s = int.from_bytes(_aes("ecb", k, nonce), "little")
    clamped = int.from_bytes(r, "little") & _POLY1305_CLAMP
    prime = (1 << 130) - 5
    accumulator = 0
    for offset in range(0, len(message), 16):
        block = message[offset : offset + 16] + b"\x01"
        accumulator = (accumulator + int.from_bytes(block, "little")) * clamped % prime
    return ((accumulator + s) % (1 << 128)).to_bytes(16, "little")


def _user_key(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    derived = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=64)
    return derived[:32], derived[32:48], derived[48:64]


def cheapen_key(repository: Path, password: str) -> None:
    """Replace the one key of the local ``repository`` (made by `restic init` with ``password``) by
    the same master key under ``CHEAP`` scrypt parameters."""
    (old,) = (repository / "keys").iterdir()
    key = json.loads(old.read_text())
    encrypt, mac_k, mac_r = _user_key(password, base64.b64decode(key["salt"]), key["N"], key["r"], key["p"])
    data = base64.b64decode(key["data"])
    iv, ciphertext, mac = data[:16], data[16:-16], data[-16:]
    if _poly1305_aes(mac_k, mac_r, iv, ciphertext) != mac:
        raise ValueError(f"{old}: the password does not open this key")
    master = _aes("ctr", encrypt, ciphertext, iv)

    salt, iv = os.urandom(64), os.urandom(16)
    encrypt, mac_k, mac_r = _user_key(password, salt, CHEAP["N"], CHEAP["r"], CHEAP["p"])
    ciphertext = _aes("ctr", encrypt, master, iv)
    data = iv + ciphertext + _poly1305_aes(mac_k, mac_r, iv, ciphertext)
    key.update(CHEAP, salt=base64.b64encode(salt).decode(), data=base64.b64encode(data).decode())
    text = json.dumps(key).encode()
    # restic names each file of a repository by the SHA-256 of its content.
    new = repository / "keys" / hashlib.sha256(text).hexdigest()
    new.write_bytes(text)
    new.chmod(old.stat().st_mode & 0o777)
    old.unlink()
