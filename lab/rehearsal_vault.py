"""The Vault provider's resources, performed by the rehearsal (lab/rehearsal.py) against the OpenBao the
rehearsal itself deployed, through Vault's HTTP API as the provider (pulumi-vault 7.14.0, bridging
hashicorp/terraform-provider-vault) calls it: the provider's ``address`` and ``token``, TLS verified
against ``caCertFile`` for the name ``tlsServerName``.

What replaces rather than updates, as the Terraform provider's schema marks it (ForceNew): a mount's
``path`` and ``type``, an auth backend's, every field of an audit device, a policy's ``name``, a role's
``backend`` and ``roleName``, a secret ID (every field: a new one is generated), a KV secret's ``mount``
and ``name``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any, Optional

from .rehearsal_kinds import Kind, RehearsalError, Resource, Saved


class _Connection(http.client.HTTPSConnection):
    """HTTPS to an address, the certificate checked for another name (``tlsServerName``)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, context=context, timeout=30)
        self.server_name = server_name
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.server_name)


def call(provider: Mapping[str, Any], method: str, path: str, body: Optional[Mapping[str, Any]] = None,
         ok: tuple[int, ...] = (200, 204)) -> Any:
    address = urllib.parse.urlparse(str(provider["address"]))
    context = ssl.create_default_context(cafile=provider.get("caCertFile") or None)
    connection = _Connection(address.hostname or "", address.port or 8200, context, str(provider.get("tlsServerName") or address.hostname))
    try:
        connection.request(method, f"/v1/{path}", body=json.dumps(body) if body is not None else None,
                           headers={"X-Vault-Token": str(provider["token"]), "Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except OSError as exc:
        raise RehearsalError(f"Vault at {provider['address']}: {method} {path}: {exc}") from None
    finally:
        connection.close()
    if response.status not in ok:
        errors = json.loads(data).get("errors") if data.strip().startswith(b"{") else data.decode(errors="replace")
        raise RehearsalError(f"Vault at {provider['address']}: {method} {path}: {response.status} {errors}")
    return json.loads(data) if data.strip() else None


class VaultKind(Kind):
    REPLACED_BY: frozenset[str] = frozenset()

    def server(self, resource: Resource) -> str:
        return urllib.parse.urlparse(str(resource.provider.get("address", ""))).hostname or ""

    def replaces(self, changed: set[str]) -> set[str]:
        return changed & self.REPLACED_BY

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        return self.create(resource)[1]

    @staticmethod
    def provider_of(old: Saved) -> Mapping[str, Any]:
        return old.provider


class Mount(VaultKind):
    REPLACED_BY = frozenset({"path", "type"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        call(resource.provider, "POST", f"sys/mounts/{spec['path']}",
             {"type": spec["type"], "description": spec.get("description", ""), "options": spec.get("options") or {}})
        return str(spec["path"]), {}

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        call(resource.provider, "POST", f"sys/mounts/{resource.inputs['path']}/tune",
             {"description": resource.inputs.get("description", ""), "options": resource.inputs.get("options") or {}})
        return {}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", f"sys/mounts/{old.id}")


class AuthBackend(VaultKind):
    REPLACED_BY = frozenset({"path", "type"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        path = resource.inputs.get("path") or resource.inputs["type"]
        call(resource.provider, "POST", f"sys/auth/{path}", {"type": resource.inputs["type"]})
        return str(path), {}

    def update(self, resource: Resource, old: Saved) -> dict[str, Any]:
        return {}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", f"sys/auth/{old.id}")


class Audit(VaultKind):
    REPLACED_BY = frozenset({"type", "path", "options", "description", "local"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        path = resource.inputs.get("path") or resource.inputs["type"]
        call(resource.provider, "PUT", f"sys/audit/{path}", {"type": resource.inputs["type"], "options": resource.inputs.get("options") or {}})
        return str(path), {}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", f"sys/audit/{old.id}")


class Policy(VaultKind):
    REPLACED_BY = frozenset({"name"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        call(resource.provider, "PUT", f"sys/policies/acl/{resource.inputs['name']}", {"policy": resource.inputs["policy"]})
        return str(resource.inputs["name"]), {}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", f"sys/policies/acl/{old.id}")


_ROLE_FIELDS = {"tokenPolicies": "token_policies", "tokenTtl": "token_ttl", "tokenMaxTtl": "token_max_ttl",
                "secretIdTtl": "secret_id_ttl", "secretIdNumUses": "secret_id_num_uses", "tokenNumUses": "token_num_uses",
                "tokenBoundCidrs": "token_bound_cidrs", "secretIdBoundCidrs": "secret_id_bound_cidrs",
                "bindSecretId": "bind_secret_id", "tokenPeriod": "token_period", "tokenType": "token_type"}


def _whole(value: Any) -> Any:
    """Pulumi's numbers arrive as floats; the provider sends Vault whole seconds and counts as integers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class AuthBackendRole(VaultKind):
    REPLACED_BY = frozenset({"backend", "roleName"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        path = f"auth/{spec.get('backend', 'approle')}/role/{spec['roleName']}"
        call(resource.provider, "POST", path, {api: _whole(spec[key]) for key, api in _ROLE_FIELDS.items() if key in spec})
        role_id = call(resource.provider, "GET", f"{path}/role-id")["data"]["role_id"]
        return path, {"roleId": role_id}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", old.id)


class AuthBackendRoleSecretId(VaultKind):
    REPLACED_BY = frozenset({"backend", "roleName", "cidrList", "metadata", "wrappingTtl", "secretId"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        path = f"auth/{spec.get('backend', 'approle')}/role/{spec['roleName']}"
        made = call(resource.provider, "POST", f"{path}/secret-id", {})["data"]
        return f"{path}/{made['secret_id_accessor']}", {"secretId": made["secret_id"], "accessor": made["secret_id_accessor"]}

    def delete(self, old: Saved) -> None:
        path = old.id.rsplit("/", 1)[0]
        call(self.provider_of(old), "POST", f"{path}/secret-id-accessor/destroy", {"secret_id_accessor": old.outputs["accessor"]})


class SecretV2(VaultKind):
    REPLACED_BY = frozenset({"mount", "name"})

    def create(self, resource: Resource) -> tuple[str, dict[str, Any]]:
        spec = resource.inputs
        call(resource.provider, "POST", f"{spec['mount']}/data/{spec['name']}", {"data": json.loads(spec["dataJson"])})
        return f"{spec['mount']}/data/{spec['name']}", {}

    def delete(self, old: Saved) -> None:
        call(self.provider_of(old), "DELETE", f"{old.inputs['mount']}/metadata/{old.inputs['name']}")


def vault_kinds() -> dict[str, Kind]:
    return {
        "vault:index/mount:Mount": Mount(),
        "vault:index/authBackend:AuthBackend": AuthBackend(),
        "vault:index/audit:Audit": Audit(),
        "vault:index/policy:Policy": Policy(),
        "vault:appRole/authBackendRole:AuthBackendRole": AuthBackendRole(),
        "vault:appRole/authBackendRoleSecretId:AuthBackendRoleSecretId": AuthBackendRoleSecretId(),
        "vault:kv/secretV2:SecretV2": SecretV2(),
    }
