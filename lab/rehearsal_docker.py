"""The Docker provider's resources, performed by the rehearsal (lab/rehearsal.py) on a lab machine's dockerd
through the Docker Engine API, as the provider (pulumi-docker 5.2.0, bridging kreuzwerker's Terraform
provider) calls it:

- a volume or network is created with its name, driver and options, and any change replaces it;
- a ``RemoteImage`` with ``keepLocally`` is looked up on the machine (the lab serves each pinned reference:
  lab/rehearsal_images.py), its ``imageId`` what containers take as their image; it is never removed;
- a container is created (``Config``/``HostConfig`` from its inputs), each upload copied in before it
  starts as a one-file tar archive extracted at "/" (``CopyToContainer``, mode 0744 or 0644), started, and with ``wait`` the rehearsal waits for its healthcheck to pass (``waitTimeout``
  seconds); ``restart``, ``memory`` and ``memorySwap`` update in place (``resourceDockerContainerUpdate``
  updates restart, max_retry_count, cpu_shares, memory, cpu_set and memory_swap), any other change
  replaces it; delete removes it with its anonymous volumes (``RemoveVolumes: true, Force: true``).

The provider reaches dockerd over SSH (``ssh://user@address``); the rehearsal uses the machine's socket,
which the lab binds out for it: the SSH sessions the provider would open are not rehearsed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import re
import socket
import tarfile
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Optional

from .core import LabHost
from .rehearsal_images import provide
from .rehearsal_kinds import Kind, RehearsalError, Resource, Saved

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def nanoseconds(duration: str) -> int:
    """A Go duration ("30s", "1m30s") in nanoseconds, as the provider parses healthcheck times."""
    return int(sum(float(value) * _UNIT_NS[unit] for value, unit in _DURATION.findall(duration or "0s")))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Engine:
    """The Docker Engine API of one machine."""

    def __init__(self, host: LabHost) -> None:
        self.host = host

    def call(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
             ok: tuple[int, ...] = (200, 201, 204), timeout: float = 300) -> Any:
        connection = _UnixConnection(str(self.host.docker_sock), timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {"Content-Type": "application/x-tar"}
            payload = json.dumps(body).encode() if body is not None else raw
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status not in ok:
            message = data.decode(errors="replace")
            with contextlib.suppress(ValueError):
                message = json.loads(message).get("message", message)
            raise RehearsalError(f"{self.host.name}: {method} {path.split('?')[0]}: {response.status} {message}")
        return json.loads(data) if data.strip() else None


def _address(provider: Mapping[str, Any]) -> str:
    host = urllib.parse.urlparse(str(provider.get("host", "")))
    if host.scheme != "ssh" or not host.hostname:
        raise RehearsalError(f"the Docker provider's host {provider.get('host')!r} is not ssh://user@address")
    return host.hostname


class DockerKind(Kind):
    def __init__(self, hosts: Mapping[str, LabHost], hub_host: Optional[LabHost] = None) -> None:
        self.hosts = hosts
        # Where the lab's stand-in for Docker Hub runs, for the stack's mirror to pull from (None: no mirror).
        self.hub_host = hub_host

    def server(self, resource: Resource) -> str:
        return _address(resource.provider)

    def engine(self, address: str) -> Engine:
        host = self.hosts.get(address)
        if host is None:
            raise RehearsalError(f"no lab machine at {address}")
        return Engine(host)


class Volume(DockerKind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        made = self.engine(self.server(resource)).call("POST", "/volumes/create", {
            "Name": spec.get("name", resource.name), "Driver": spec.get("driver", "local"),
            "DriverOpts": spec.get("driverOpts") or {}, "Labels": {label["label"]: label["value"] for label in spec.get("labels") or []},
        })
        return str(made["Name"]), {"name": made["Name"], "mountpoint": made.get("Mountpoint", ""), "driver": made["Driver"]}

    def delete(self, old: Saved) -> None:
        self.engine(old.server).call("DELETE", f"/volumes/{old.id}", ok=(204, 404))


class Network(DockerKind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        made = self.engine(self.server(resource)).call("POST", "/networks/create", {
            "Name": spec.get("name", resource.name), "Driver": spec.get("driver", "bridge"),
            "Attachable": bool(spec.get("attachable")), "Internal": bool(spec.get("internal")),
            "Options": spec.get("options") or {}, "CheckDuplicate": True,
        })
        return str(made["Id"]), {"name": spec.get("name", resource.name)}

    def delete(self, old: Saved) -> None:
        self.engine(old.server).call("DELETE", f"/networks/{old.id}", ok=(204, 404))


class RemoteImage(DockerKind):
    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        reference = str(resource.inputs["name"])
        engine = self.engine(self.server(resource))
        served = provide(engine.host, reference, self.hub_host)
        image = engine.call("GET", f"/images/{urllib.parse.quote(reference, safe='')}/json")
        digests = image.get("RepoDigests") or [f"{reference}@{image['Id']}"]
        return f"{image['Id']}{reference}", {"imageId": image["Id"], "repoDigest": digests[0],
                                             "served": f"{served.kind}: {served.software} (pinned {served.pinned_version}), {served.source}"}

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        return old.outputs  # keepLocally and the like change nothing on the machine

    def delete(self, old: Saved) -> None:
        if not old.inputs.get("keepLocally"):
            self.engine(old.server).call("DELETE", f"/images/{urllib.parse.quote(str(old.inputs['name']), safe='')}", ok=(200, 404, 409))


def _upload(upload: Mapping[str, Any]) -> bytes:
    """One upload as the provider sends it: a tar archive of one entry named by the file's full path, mode
    0744 when executable and 0644 otherwise, extracted at the container's "/" (CopyToContainer)."""
    content = base64.b64decode(upload["contentBase64"]) if upload.get("contentBase64") else str(upload.get("content", "")).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(str(upload["file"]))
        info.size = len(content)
        info.mode = 0o744 if upload.get("executable") else 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class Container(DockerKind):
    # resourceDockerContainerUpdate updates these in place; the provider's own `wait` settings change nothing.
    UPDATABLE = frozenset({"restart", "memory", "memorySwap", "maxRetryCount", "cpuShares", "cpuSet", "wait", "waitTimeout"})

    def replaces(self, changed: set[str]) -> set[str]:
        return changed - self.UPDATABLE

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        engine = self.engine(self.server(resource))
        name = str(spec.get("name", resource.name))
        ports = spec.get("ports") or []
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in ports:
            key = f"{int(port['internal'])}/{port.get('protocol', 'tcp')}"
            bindings.setdefault(key, []).append({"HostIp": port.get("ip", "0.0.0.0"), "HostPort": str(int(port.get("external", port["internal"])))})
        binds = []
        for volume in spec.get("volumes") or []:
            source = volume.get("volumeName") or volume.get("hostPath")
            binds.append(f"{source}:{volume['containerPath']}" + (":ro" if volume.get("readOnly") else ""))
        health = spec.get("healthcheck")
        config: dict[str, Any] = {
            "Image": spec["image"], "Env": spec.get("envs") or [], "Hostname": spec.get("hostname", ""),
            "User": spec.get("user", ""), "ExposedPorts": {key: {} for key in bindings},
            "HostConfig": {
                "RestartPolicy": {"Name": spec.get("restart", "no"), "MaximumRetryCount": int(spec.get("maxRetryCount", 0))},
                "Memory": int(spec.get("memory", 0)) * 2**20, "MemorySwap": int(spec.get("memorySwap", 0)) * 2**20,
                "LogConfig": {"Type": spec.get("logDriver", "json-file"), "Config": spec.get("logOpts") or {}},
                "CapAdd": (spec.get("capabilities") or {}).get("adds") or [],
                "CapDrop": (spec.get("capabilities") or {}).get("drops") or [],
                "NetworkMode": spec.get("networkMode", "bridge"), "PortBindings": bindings, "Binds": binds,
            },
        }
        if spec.get("command"):
            config["Cmd"] = spec["command"]
        if spec.get("entrypoints"):
            config["Entrypoint"] = spec["entrypoints"]
        if health:
            config["Healthcheck"] = {
                "Test": health["tests"], "Interval": nanoseconds(health.get("interval", "0s")),
                "Timeout": nanoseconds(health.get("timeout", "0s")), "StartPeriod": nanoseconds(health.get("startPeriod", "0s")),
                "Retries": int(health.get("retries", 0)),
            }
        made = engine.call("POST", f"/containers/create?name={urllib.parse.quote(name)}", config)
        identifier = str(made["Id"])
        for upload in spec.get("uploads") or []:
            engine.call("PUT", f"/containers/{identifier}/archive?path=/", raw=_upload(upload))
        engine.call("POST", f"/containers/{identifier}/start")
        if spec.get("wait"):
            self._wait_healthy(engine, identifier, name, float(spec.get("waitTimeout", 60)))
        return identifier, {"id": identifier}

    @staticmethod
    def _wait_healthy(engine: Engine, identifier: str, name: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            state = engine.call("GET", f"/containers/{identifier}/json")["State"]
            health = (state.get("Health") or {}).get("Status", "none")
            if state.get("Running") and health in ("healthy", "none"):
                return
            if time.monotonic() > deadline or state.get("Status") == "exited":
                raise RehearsalError(f"{engine.host.name}: container {name} is {state.get('Status')} (health: {health}) "
                                     f"after up to {seconds:.0f} s; see `docker logs {name}` there")
            time.sleep(1)

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        spec = resource.inputs
        self.engine(old.server).call("POST", f"/containers/{old.id}/update", {
            "RestartPolicy": {"Name": spec.get("restart", "no"), "MaximumRetryCount": int(spec.get("maxRetryCount", 0))},
            "Memory": int(spec.get("memory", 0)) * 2**20, "MemorySwap": int(spec.get("memorySwap", 0)) * 2**20,
        })
        return old.outputs

    def delete(self, old: Saved) -> None:
        self.engine(old.server).call("DELETE", f"/containers/{old.id}?v=1&force=1", ok=(204, 404))


def docker_kinds(hosts: Mapping[str, LabHost], hub_host: Optional[LabHost] = None) -> dict[str, Kind]:
    """The Docker provider's resource types, on the machines at ``hosts`` (by private address); Docker Hub
    images through the machines' mirror from the stand-in for Docker Hub on ``hub_host``, if given."""
    return {
        "docker:index/volume:Volume": Volume(hosts),
        "docker:index/network:Network": Network(hosts),
        "docker:index/remoteImage:RemoteImage": RemoteImage(hosts, hub_host),
        "docker:index/container:Container": Container(hosts),
    }
