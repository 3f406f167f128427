"""The one way credentials reach Jenkins: every component adds what a service's CI job needs to a
``CredentialBook``; the Vault component writes each service's entries to ``kv/samarth/<service>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi


class CredentialBook:
    """Environment maps per service, gathered from every component before Vault publishes them."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, pulumi.Input[str]]] = {}

    def add(self, service: str, values: Mapping[str, pulumi.Input[str]]) -> None:
        entry = self._entries.setdefault(service, {})
        clash = sorted(entry.keys() & values.keys())
        if clash:
            raise ValueError(f"kv/samarth/{service}: {', '.join(clash)} published twice")
        entry.update(values)

    def services(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        return {service: dict(values) for service, values in sorted(self._entries.items())}
