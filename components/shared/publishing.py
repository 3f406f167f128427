"""The one way credentials reach Vault: every component adds what a service's CI job needs (or, in the
platform's area, what only operators read) to a ``CredentialBook``; the Vault component writes each
service's entries to ``kv/<area>/<service>``: ``kv/samarth/<service>``, which Jenkins reads, or
``kv/platform/<service>``, which it does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from .service import APPLICATIONS


class CredentialBook:
    """Environment maps per service, gathered from every component before Vault publishes them.

    ``close`` hands the entries over (to ``VaultServer.publish``); an ``add`` after that is an error,
    not a credential silently left out of Vault."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, pulumi.Input[str]]] = {}
        self._closed = False

    def add(self, service: str, values: Mapping[str, pulumi.Input[str]], area: str = APPLICATIONS) -> None:
        """``values`` at ``kv/<area>/<service>`` (``service.APPLICATIONS`` or ``service.PLATFORM``)."""
        path = f"{area}/{service}"
        if self._closed:
            raise RuntimeError(
                f"kv/{path}: {', '.join(sorted(values))} added after the credentials were handed to "
                "Vault; build the component that adds them before vault_server.publish(book) in __main__.py"
            )
        entry = self._entries.setdefault(path, {})
        clash = sorted(entry.keys() & values.keys())
        if clash:
            raise ValueError(f"kv/{path}: {', '.join(clash)} published twice")
        entry.update(values)

    def services(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        """Every entry by its path under the KV mount (``samarth/<service>``, ``platform/<service>``)."""
        return {path: dict(values) for path, values in sorted(self._entries.items())}

    def close(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        """Every entry by its path under the KV mount, for publishing; the book takes no more after this."""
        self._closed = True
        return self.services()
