"""ACME certificates for Nginx's route host names (``edge.tls.mode: acme``; docs/certificates.md).

The client is lego (``versions.lego``), run as a container on the application server by
``samarth-certificates`` (components/services/edge/scripts/acme-certificates.sh), installed root-only at
``SCRIPT_PATH``. One certificate per host name: a name added or removed touches only its own
certificate, and one name whose DNS is wrong does not hold back the others' issuance or renewal.
HTTP-01 tokens land in ``ACME_DIR/webroot``, which Nginx serves on port 80 at
``/.well-known/acme-challenge/``; issued files are copied to ``ACME_DIR/live``, which Nginx reads.

The ACME account key is 32 random bytes kept in Pulumi state as a secret (a ``RandomBytes``),
written root-only where lego looks for it: a rebuilt server keeps the same ACME account.
"""

from __future__ import annotations

import base64
import posixpath
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from components.shared.shell import render

from .settings import DEFAULT_RENEWAL_SCHEDULE, SERVICE, Acme

# Nginx's server: the certificates are issued and kept there.
SERVER = SERVICE.server
ACME_DIR = "/etc/samarth/acme"
SCRIPT_PATH = "/usr/local/sbin/samarth-certificates"
UNIT = "samarth-certificates"
# Where the Nginx container sees the two directories it mounts (read-only).
NGINX_LIVE_DIR = "/etc/nginx/acme"
NGINX_WEBROOT = "/var/www/acme"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
# Renew with a third of the lifetime left (Let's Encrypt's advice): day 60 of 90, day 4 of 6.
RENEW_PERCENT_LEFT = 33
ACCOUNT_KEY_BYTES = 32

# SEC1 ECPrivateKey (RFC 5915) for P-256 without the optional public key, which readers derive:
# SEQUENCE { INTEGER 1, OCTET STRING <32-byte scalar>, [0] OID prime256v1 }.
_EC_KEY_PREFIX = bytes.fromhex("30310201010420")
_EC_KEY_SUFFIX = bytes.fromhex("a00a06082a8648ce3d030107")


@dataclass(frozen=True)
class AcmeClient:
    """What the ACME client is run with: the CA and the account (``edge.tls.acme``), the names it gets
    certificates for (``acme_hosts``), its image (``versions.lego``)."""

    settings: Acme
    hosts: tuple[str, ...]
    image: str


def account_key_pem(random_base64: str) -> str:
    """The ACME account key (P-256, PEM) made from ``ACCOUNT_KEY_BYTES`` random bytes. A scalar of 0 or
    at least the curve order (odds about 2^-32) is refused by lego and openssl alike, loudly."""
    scalar = base64.b64decode(random_base64)
    if len(scalar) != ACCOUNT_KEY_BYTES:
        raise ValueError(f"an account key needs {ACCOUNT_KEY_BYTES} random bytes, got {len(scalar)}")
    der = _EC_KEY_PREFIX + scalar + _EC_KEY_SUFFIX
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"


def account_key_path(acme: Acme, acme_dir: str = ACME_DIR) -> str:
    """Where lego (v4) keeps the account key of ``acme.email`` at ``acme.directoryUrl``
    (cmd/accounts_storage.go: ``accounts/<host_port>/<email>/keys/<email>.key``)."""
    server = urlsplit(acme.directory_url).netloc.replace(":", "_")
    return posixpath.join(acme_dir, "lego", "accounts", server, acme.email, "keys", f"{acme.email}.key")


def certificates_script(client: AcmeClient, acme_dir: str = ACME_DIR, nginx_container: str = "nginx") -> str:
    """``samarth-certificates`` with this stack's names, CA and client image: an executable file of its
    own, so it names its interpreter (systemd's ExecStart runs it directly, and no shell falls back to sh)."""
    acme = client.settings
    return "#!/bin/sh\n" + render(
        "acme-certificates.sh",
        "samarth-certificates",
        HOSTS=" ".join(client.hosts),
        ACME_DIR=acme_dir,
        IMAGE=client.image,
        DIRECTORY_URL=acme.directory_url,
        EMAIL=acme.email,
        CA_CERTIFICATE=acme.ca_certificate or "",
        NGINX_CONTAINER=nginx_container,
        RENEW_PERCENT_LEFT=RENEW_PERCENT_LEFT,
    )


def install_script(client: AcmeClient, acme_dir: str = ACME_DIR, script_path: str = SCRIPT_PATH, nginx_container: str = "nginx") -> str:
    """Installs ``samarth-certificates`` and the account key (stdin), then places placeholders."""
    return render(
        "acme-install.sh",
        f"certificates-install[{SERVER}]",
        SERVER=SERVER,
        ACME_DIR=acme_dir,
        ACCOUNT_KEY_FILE=account_key_path(client.settings, acme_dir),
        SCRIPT_PATH=script_path,
        CERTIFICATES_SCRIPT=certificates_script(client, acme_dir, nginx_container),
    )


def run_script(action: str, names: Sequence[str] = (), script_path: str = SCRIPT_PATH) -> str:
    """``samarth-certificates ACTION`` for ``names`` (every name when empty), as root."""
    label = f"certificates-{action}[{','.join(names) or SERVER}]"
    return render("acme-run.sh", label, SERVER=SERVER, SCRIPT_PATH=script_path, ACTION=action, NAMES=" ".join(names))


SERVICE_UNIT = f"""\
[Unit]
Description=Renew the ACME certificates of Samarth's public names (samarth-infra)
Documentation=file:{SCRIPT_PATH}
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
Type=oneshot
ExecStart={SCRIPT_PATH} renew
"""

def timer_unit(acme: Acme) -> str:
    """The renewal timer: ``renewalSchedule``, each run put off by up to ``renewalRandomDelay`` so that
    servers do not all call the CA at once; Persistent catches up after a reboot or downtime that
    skipped a run."""
    when = "twice a day" if acme.renewal_schedule == DEFAULT_RENEWAL_SCHEDULE else f"on the schedule {acme.renewal_schedule}"
    return f"""\
[Unit]
Description=Renew the ACME certificates of Samarth's public names {when}

[Timer]
OnCalendar={acme.renewal_schedule}
RandomizedDelaySec={acme.renewal_random_delay}
Persistent=true

[Install]
WantedBy=timers.target
"""


def timer_script(acme: Acme) -> str:
    """Installs and starts the renewal timer of ``edge.tls.acme``."""
    return render(
        "acme-timer.sh", f"certificates-timer[{SERVER}]", SERVER=SERVER, UNIT=UNIT, SERVICE_UNIT=SERVICE_UNIT,
        TIMER_UNIT=timer_unit(acme),
    )
