"""A lab where the program's ACME scripts get real certificates from a real ACME server.

Two lab machines (booted Debian 12 under systemd-nspawn, lab/core.py):

- ``acme``: a machine without Docker whose network namespace runs this machine's ``pebble`` (Let's
  Encrypt's test CA, Debian's package) and ``pebble-challtestsrv`` (its DNS, which answers every name
  with the application host's address): the CA is the Internet's, not a server of the program.
  Pebble serves its directory over TLS with a certificate from a CA made here, which the client is told
  to trust (``edge.tls.acme.caCertificate``, a file placed on the application machine).
- ``application``: the server. The program's scripts (components/services/edge/acme.py, components/services/edge/component.py) run over
  real SSH as ``samarth-devops`` in the order ``pulumi up`` runs them, with the program's own paths
  (``/etc/samarth/acme``, ``/usr/local/sbin/samarth-certificates``, the SSH user's Nginx config
  directory) and its systemd timer. Its dockerd runs what the program runs there as containers: Nginx
  named ``nginx`` with ports 80 and 443 published (Debian's nginx, ``docker import``ed), and the ACME
  client under its pinned image name (``versions.lego``) built the same way from Debian's ``lego`` binary
  (and busybox, as the upstream Alpine image has a shell): the server pulls that image, the lab has no
  registry to pull from.

Used by tests/lab/test_acme_lab.py and benchmarks/acme_renewal.py.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from components.assembly import stack_upstreams
from components.config import StackConfig
from components.services.edge import acme
from components.services.edge import component as edge
from components.shared.shell import render
from lab import Lab, LabHost, free_subnet, machine_lock, ssh_command
from lab.core import NETNS_DIR
from tools.offline import stack_deployment

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
LEGO = shutil.which("lego") or "/usr/bin/lego"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
TOOLS = (PEBBLE, CHALLTESTSRV, LEGO, NGINX, BUSYBOX)
NGINX_IMAGE = "samarth-test/debian-nginx:lab"
# Certificates live an hour: long enough for a second run to find them current, short enough that
# "a third of the lifetime left" is reached by moving the clock 40 minutes on.
VALIDITY_SECONDS = 3600
UPSTREAM_PORT = 5000  # the registry's port: the registry route gets a real answer (200)
# Where the operator put the private ACME CA's TLS root on the application server (edge.tls.acme.caCertificate).
CA_CERTIFICATE = "/etc/ssl/samarth-lab-pebble-ca.pem"
FAKE_DATE = "/usr/local/bin/date"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not os.path.exists(tool)]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:6])}...` failed ({result.returncode}): {result.stderr or result.stdout}")
    return result


def _libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads (ldd), to copy into a minimal image."""
    out = _run(["ldd", binary]).stdout
    return sorted(set(re.findall(r"(/\S+\.so[^\s]*)", out)))


def _import_image(host: LabHost, tag: str, files: dict[str, str], texts: dict[str, str], links: dict[str, str],
                  entrypoint: Optional[str] = None) -> None:
    """``docker import`` of a root filesystem made of ``files`` (machine path -> image path), ``texts``
    (image path -> content) and symlinks, into ``host``'s daemon as ``tag``."""
    buffer = io.BytesIO()
    members = [*files.values(), *texts, *links, "/var/www/x", "/run/x", "/var/log/nginx/x", "/var/lib/nginx/x", "/etc/nginx/conf.d/x"]
    # Every directory explicitly, world-readable (docker import would make missing parents root-only).
    directories = sorted({str(parent).lstrip("/") for m in members for parent in Path(m).parents if str(parent) != "/"})
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ["tmp", *directories]:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for source, target in files.items():
            tar.add(os.path.realpath(source), arcname=target.lstrip("/"))
        for target, text in texts.items():
            data = text.encode()
            info = tarfile.TarInfo(target.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for target, source in links.items():
            info = tarfile.TarInfo(target.lstrip("/"))
            info.type, info.linkname = tarfile.SYMTYPE, source
            tar.addfile(info)
    argv = ["docker", "-H", host.docker_host, "import"]
    if entrypoint:
        argv += ["--change", f'ENTRYPOINT ["{entrypoint}"]']
    result = subprocess.run([*argv, "-", tag], input=buffer.getvalue(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"docker import {tag} failed: {result.stderr.decode(errors='replace')}")


NGINX_MAIN_CONF = """\
user nobody nogroup;
worker_processes 2;
pid /run/nginx.pid;
error_log stderr notice;
events {}
http {
  include /etc/nginx/mime.types;
  access_log off;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  include /etc/nginx/conf.d/*.conf;
}
"""


def build_images(host: LabHost, config: StackConfig) -> None:
    """The client under its pinned name, and an ``nginx`` image, from Debian's binaries."""
    libraries = {lib: lib for lib in _libraries(LEGO)}
    busybox_links = {f"/bin/{applet}": "busybox" for applet in ("sh", "cat", "ls", "mkdir", "rm", "mv", "cp")}
    _import_image(
        host,
        config.versions.lego,
        {
            LEGO: "/usr/bin/lego",
            BUSYBOX: "/bin/busybox",
            "/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
            **libraries,
        },
        {},
        busybox_links,
        entrypoint="/usr/bin/lego",
    )
    _import_image(
        host,
        NGINX_IMAGE,
        {
            NGINX: "/usr/sbin/nginx",
            "/etc/nginx/mime.types": "/etc/nginx/mime.types",
            # The program uploads Vault's CA there for the proxy hop; any CA does for the lab.
            "/etc/ssl/certs/ca-certificates.crt": edge.ca_file("vault"),
            **{lib: lib for lib in _libraries(NGINX)},
        },
        {
            "/etc/nginx/nginx.conf": NGINX_MAIN_CONF,
            "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "/etc/group": "root:x:0:\nnogroup:x:65534:\n",
        },
        {},
    )


def _openssl(*args: str) -> None:
    _run(["openssl", *args])


def make_pebble_certificate(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate signed by it for pebble's address: (ca, certificate, key)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "pebble.key", "pebble.csr", "pebble.pem"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=samarth lab pebble CA", "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={address}",
             "-keyout", str(key), "-out", str(csr))
    extensions = directory / "san.ext"
    extensions.write_text(f"subjectAltName=IP:{address}\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
             "-extfile", str(extensions), "-out", str(cert))
    return ca, cert, key


def lab_config(directory_url: str, ca_certificate: str) -> StackConfig:
    """Production's config with the ACME directory and the CA it is served with swapped for pebble's."""
    config = stack_deployment("prod").config
    assert config.edge.tls.acme is not None
    tls_acme = config.edge.tls.acme.model_copy(update={"directory_url": directory_url, "ca_certificate": ca_certificate})
    tls = config.edge.tls.model_copy(update={"acme": tls_acme})
    return config.model_copy(update={"edge": config.edge.model_copy(update={"tls": tls})})


def _wait_port(address: str, port: int, process: Optional[subprocess.Popen], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError as error:
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {address}:{port}: {log.read_text(errors='replace')[-2000:]}") from error
            time.sleep(0.1)


@dataclass
class Step:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class AcmeLab:
    lab: Lab
    application: LabHost
    ca: LabHost
    work: Path  # on this machine: pebble's files and the lab's logs
    config: StackConfig
    pebble_ca: Path  # on this machine: the CA pebble's directory is served with
    account_key: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    # The program's own paths on the application server.
    acme_dir: str = acme.ACME_DIR
    script_path: str = acme.SCRIPT_PATH

    @property
    def conf_dir(self) -> str:
        """Where EdgeProxy keeps Nginx's config: in the SSH user's home."""
        return f"/home/{self.application.user}/samarth/nginx/conf.d"

    def path(self, machine_path: str) -> Path:
        """``machine_path`` on the application machine, as this machine sees it."""
        return self.application.root / machine_path.lstrip("/")

    def ssh(self, script: str, stdin: str = "") -> Step:
        """``script`` over real SSH on the application host as its login user, as the engine runs a remote command."""
        started = time.monotonic()
        result = subprocess.run(ssh_command(self.application, script), input=stdin, capture_output=True,
                                text=True, timeout=600)
        return Step(result.returncode, result.stdout, result.stderr, time.monotonic() - started)

    def install(self, config: Optional[StackConfig] = None) -> Step:
        config = config or self.config
        assert config.edge.tls.acme is not None
        client = acme.AcmeClient(config.edge.tls.acme, tuple(config.acme_hosts()), config.versions.lego)
        return self.ssh(acme.install_script(client, self.acme_dir, self.script_path, "nginx"), stdin=self.account_key)

    def install_timer(self, config: Optional[StackConfig] = None) -> Step:
        config = config or self.config
        assert config.edge.tls.acme is not None
        return self.ssh(acme.timer_script(config.edge.tls.acme))

    def reload(self, config: Optional[StackConfig] = None) -> Step:
        config = config or self.config
        addresses = {upstream.server: self.application.address for upstream in stack_upstreams(config)}
        text = edge.render_config(config.edge.tls, config.edge_routes(), stack_upstreams(config), addresses)
        step = self.ssh(edge.reload_script("nginx", self.conf_dir), stdin=text)
        if step.returncode == 0:
            for port in (80, 443):
                _wait_port(self.application.address, port, None, self.work / "pebble.log")
        return step

    def certificates(self, action: str, clock_offset_seconds: int = 0, names: Sequence[str] = ()) -> Step:
        """``samarth-certificates ACTION [NAME...]`` as ``pulumi up`` runs it (through sudo), with the
        clock seen ``clock_offset_seconds`` ahead if given (``clock_ahead``)."""
        if not clock_offset_seconds:
            return self.ssh(acme.run_script(action, names, self.script_path))
        with self.clock_ahead(clock_offset_seconds):
            return self.ssh(acme.run_script(action, names, self.script_path))

    @contextmanager
    def unresolvable(self, host: str) -> Iterator[None]:
        """``host`` resolves, for the CA, to an address where nothing answers on port 80 (the CA's own: its
        DNS not pointed at the server yet), for as long as the block runs."""
        def management(path: str, body: str) -> None:
            _run(["nsenter", f"--net={NETNS_DIR / self.ca.namespace}", "curl", "-fsS", "-X", "POST", "-d", body,
                  f"http://127.0.0.1:8055/{path}"])
        management("add-a", f'{{"host": "{host}.", "addresses": ["{self.ca.address}"]}}')
        try:
            yield
        finally:
            management("clear-a", f'{{"host": "{host}."}}')

    @contextmanager
    def clock_ahead(self, seconds: int) -> Iterator[None]:
        """A ``date`` whose "now" (``date +%s``) is ``seconds`` ahead, for as long as the block runs; the
        certificates' dates are untouched. The machines share this machine's clock, and sudo (its
        secure_path) and systemd hand the script their own PATH: the fake goes where both look
        first, /usr/local/bin, ahead of Debian's /usr/bin/date."""
        self.application.write_file(
            FAKE_DATE,
            '#!/bin/sh\nif [ "$#" -eq 1 ] && [ "$1" = "+%s" ]; then echo $(( $(/usr/bin/date +%s) + '
            f'{seconds} )); else exec /usr/bin/date "$@"; fi\n',
            mode=0o755,
        )
        try:
            yield
        finally:
            self.path(FAKE_DATE).unlink()

    def systemctl(self, *args: str) -> Step:
        """``systemctl ARGS`` on the application host through sudo, as an operator runs it."""
        return self.ssh(shlex.join(["sudo", "-n", "systemctl", *args]))

    def renewal_journal(self) -> str:
        """``journalctl -u samarth-certificates`` as the operator reads it (docs/certificates.md)."""
        step = self.ssh(shlex.join(["sudo", "-n", "journalctl", "--no-pager", "-o", "cat", "-u", acme.UNIT]))
        if step.returncode != 0:
            raise RuntimeError(f"journalctl -u {acme.UNIT} failed: {step.stderr}")
        return step.stdout

    def renewal_run(self) -> Step:
        """One run of the renewal service as its timer starts it (by systemd, as root, in systemd's
        environment); ``systemctl start`` returns when the oneshot has finished. The step's stdout is
        what this run wrote to the journal, which journald may store a moment after the run ends."""
        before = self.renewal_journal()
        step = self.systemctl("start", f"{acme.UNIT}.service")
        deadline = time.monotonic() + 15
        while True:
            journal = self.renewal_journal()
            run = journal[len(before):] if journal.startswith(before) else journal
            if re.search(r"^certificates: \d+ obtained", run, re.M) or time.monotonic() > deadline:
                return Step(step.returncode, run, step.stderr, step.seconds)
            time.sleep(0.2)

    def start_nginx(self) -> None:
        """The config directory made by the SSH user (nginx-directory), then the Nginx container as
        EdgeProxy makes it: ports 80 and 443 published, config and ACME directories mounted read-only."""
        step = self.ssh(render("nginx-directory.sh", "nginx-directory", LIVE_DIR=self.conf_dir))
        if step.returncode != 0:
            raise RuntimeError(f"nginx-directory failed: {step.stderr}")
        self._run_nginx()

    def _run_nginx(self) -> None:
        _run(["docker", "-H", self.application.docker_host, "run", "-d", "--name", "nginx",
              "-p", "0.0.0.0:80:80", "-p", "0.0.0.0:443:443",
              "-v", f"{self.conf_dir}:{edge.CONF_DIR}:ro",
              "-v", f"{self.acme_dir}/live:{acme.NGINX_LIVE_DIR}:ro",
              "-v", f"{self.acme_dir}/webroot:{acme.NGINX_WEBROOT}:ro",
              NGINX_IMAGE, "/usr/sbin/nginx", "-g", "daemon off;"])

    def replace_nginx(self) -> None:
        """What `pulumi up` does when the container's mounts change: delete it (its name and ports cannot
        be held twice), create and start the new one, which reads the config and certificates on disk."""
        _run(["docker", "-H", self.application.docker_host, "rm", "-f", "nginx"])
        self._run_nginx()
        for port in (80, 443):
            _wait_port(self.application.address, port, None, self.work / "pebble.log")

    def pebble_roots(self) -> ssl.SSLContext:
        """A client context trusting pebble's issuing root (from its management API) and nothing else."""
        context = ssl.create_default_context(cafile=str(self.pebble_ca))
        with urllib.request.urlopen(f"https://{self.ca.address}:15000/roots/0", context=context, timeout=10) as response:
            root = response.read().decode()
        return ssl.create_default_context(cadata=root)

    def served_certificate(self, host: str, context: ssl.SSLContext) -> bytes:
        """The DER certificate Nginx presents for ``host``, verified against ``context``."""
        with socket.create_connection((self.application.address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            certificate = tls.getpeercert(binary_form=True)
            assert certificate is not None
            return certificate

    def wait_served(self, host: str, context: ssl.SSLContext, seconds: float = 15) -> bytes:
        """The certificate Nginx presents for ``host`` once it is the one installed for it: `nginx -s
        reload` returns before the new workers take over (the old ones finish their connections)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                served = self.served_certificate(host, context)
                if served == self.live_certificate(host):
                    return served
            except ssl.SSLCertVerificationError:
                served = b""
            if time.monotonic() > deadline:
                return served
            time.sleep(0.1)

    def https_status(self, host: str, path: str, context: ssl.SSLContext) -> int:
        with socket.create_connection((self.application.address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return int(tls.recv(64).split()[1])

    def http_status(self, host: str, path: str) -> int:
        with socket.create_connection((self.application.address, 80), timeout=10) as raw:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return int(raw.recv(64).split()[1])

    def live_certificate(self, host: str) -> bytes:
        """The first certificate of the chain the scripts installed for Nginx, as DER."""
        pem = self.path(f"{self.acme_dir}/live/{host}.crt").read_text()
        return ssl.PEM_cert_to_DER_cert(pem[: pem.index("-----END CERTIFICATE-----") + 25])


@dataclass
class RequestLoop:
    """HTTPS requests back to back, each on a new connection, counting the ones that fail."""

    lab: AcmeLab
    host: str
    context: ssl.SSLContext
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    # time.monotonic() of each failure, to measure an outage's length
    failed_at: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                status = self.lab.https_status(self.host, "/", self.context)
                if status != 200:
                    self.failures.append(f"HTTP {status}")
                    self.failed_at.append(time.monotonic())
            except (OSError, ssl.SSLError, ValueError, IndexError) as error:
                self.failures.append(repr(error))
                self.failed_at.append(time.monotonic())

    @contextmanager
    def running(self, threads: int = 4) -> Iterator[RequestLoop]:
        workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=30)


@dataclass(frozen=True)
class Pebble:
    """A running pebble: its directory URL and, on this machine, the CA its directory is served with."""

    directory_url: str
    ca_pem: Path


@contextmanager
def pebble(ca: LabHost, answer: LabHost, work: Path, logs: Any) -> Iterator[Pebble]:
    """Pebble and its DNS (every name answered with ``answer``'s address) in ``ca``'s network namespace,
    run from this machine, stopped when the block ends; ``logs`` gets their output."""
    processes: list[subprocess.Popen] = []
    try:
        ca_pem, cert, key = make_pebble_certificate(work, ca.address)
        config_file = work / "pebble.json"
        config_file.write_text(
            '{"pebble": {"listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000", '
            f'"certificate": "{cert}", "privateKey": "{key}", "httpPort": 80, "tlsPort": 443, '
            f'"ocspResponderURL": "", "externalAccountBindingRequired": false, "certificateValidityPeriod": {VALIDITY_SECONDS}}}}}\n'
        )
        netns = f"--net={NETNS_DIR / ca.namespace}"
        processes.append(subprocess.Popen(
            ["nsenter", netns, CHALLTESTSRV, "-defaultIPv4", answer.address, "-defaultIPv6", "",
             "-dns01", "127.0.0.1:8053", "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", "127.0.0.1:8055"],
            stdout=logs, stderr=subprocess.STDOUT,
        ))
        # No authorization reuse (pebble reuses half of its valid ones by default): every order validates
        # its names, so a name made unreachable (``AcmeLab.unresolvable``) fails every time.
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        processes.append(subprocess.Popen(
            ["nsenter", netns, PEBBLE, "-config", str(config_file), "-dnsserver", "127.0.0.1:8053"],
            stdout=logs, stderr=subprocess.STDOUT, env=env,
        ))
        _wait_port(ca.address, 14000, processes[1], Path(logs.name))
        yield Pebble(f"https://{ca.address}:14000/dir", ca_pem)
    finally:
        _stop(processes)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def acme_lab(work: Path) -> Iterator[AcmeLab]:
    """Everything up, torn down afterwards (daemons, machines, namespaces)."""
    with machine_lock():
        lab = Lab(prefix=f"a{os.getpid()}", subnet=free_subnet(), state_dir=work / "state", timeout=90)
        try:
            (application,) = lab.up(["application"])
            # Pebble runs from this machine in that machine's network namespace: no Docker there.
            (ca,) = lab.up(["acme"], bare=True)
        except BaseException:
            lab.down()
            raise
    processes: list[subprocess.Popen] = []
    logs = (work / "pebble.log").open("w")
    try:
        with pebble(ca, application, work, logs) as served:
            application.write_file(CA_CERTIFICATE, served.ca_pem.read_text())
            config = lab_config(served.directory_url, CA_CERTIFICATE)
            build_images(application, config)
            # What the registry route proxies to: a plain HTTP server on the application host's address.
            (work / "upstream").mkdir()
            processes.append(subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR / application.namespace}", "python3", "-m", "http.server",
                 "--bind", application.address, "--directory", str(work / "upstream"), str(UPSTREAM_PORT)],
                stdout=logs, stderr=subprocess.STDOUT,
            ))
            _wait_port(application.address, UPSTREAM_PORT, processes[-1], work / "pebble.log")
            # As the program makes it: 32 random bytes (a RandomBytes in state) as a P-256 key.
            account_key = acme.account_key_pem(b64encode(os.urandom(acme.ACCOUNT_KEY_BYTES)).decode())
            yield AcmeLab(lab, application, ca, work, config, served.ca_pem, account_key, processes)
    finally:
        _stop(processes)
        logs.close()
        lab.down()
