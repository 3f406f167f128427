"""The one way credentials reach Jenkins: every component adds what a service's CI job needs to a
``CredentialBook``; the Vault component writes each service's entries to ``kv/samarth/<service>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi


class CredentialBook:
    """Environment maps per service, gathered from every component before Vault publishes them.

    ``close`` hands the entries over (to ``VaultServer.publish``); an ``add`` after that is an error,
    not a credential silently left out of Vault."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, pulumi.Input[str]]] = {}
        self._closed = False

    def add(self, service: str, values: Mapping[str, pulumi.Input[str]]) -> None:
        if self._closed:
            raise RuntimeError(
                f"kv/samarth/{service}: {', '.join(sorted(values))} added after the credentials were handed to "
                "Vault; build the component that adds them before vault_server.publish(book) in __main__.py"
            )
        entry = self._entries.setdefault(service, {})
        clash = sorted(entry.keys() & values.keys())
        if clash:
            raise ValueError(f"kv/samarth/{service}: {', '.join(clash)} published twice")
        entry.update(values)

    def services(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        return {service: dict(values) for service, values in sorted(self._entries.items())}

    def close(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        """Every entry, for publishing; the book takes no more after this."""
        self._closed = True
        return self.services()
