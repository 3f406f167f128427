"""A toy backing service on the application server, written as a new one would be: what it declares from
config alone (a port the swarm's services reach, the Vault path it publishes) and how it is built (a
password, published). ``tests/unit/test_services.py`` adds it to ``components.assembly.BACKING``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

import pulumi
import pulumi_random as random

from components.platform.host.component import BuildInputs
from components.shared.publishing import CredentialBook
from components.shared.service import SWARM_MEMBERS, Credentials, Declaration, Listener, Placement, Service

if TYPE_CHECKING:
    from components.config import StackConfig

PORT = 7777


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    server = SERVICE.server
    return Declaration(
        listeners=(Listener(server, PORT, "the toy", "toy", (SWARM_MEMBERS,)),),
        credentials=(Credentials("toy", ("TOY_PASSWORD",)),),
        placements=(Placement(server, "toy", 64),),
    )


SERVICE = Service("toy", declare, "application")


class Toy(pulumi.ComponentResource):
    def __init__(self, name: str, book: CredentialBook, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:toy:Toy", name, None, opts)
        password = random.RandomPassword(f"{name}-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self))
        book.add("toy", {"TOY_PASSWORD": pulumi.Output.secret(password.result)})
        self.exports = {"toyPort": PORT}
        self.register_outputs({})


def build(inputs: BuildInputs) -> Toy:
    return Toy("toy", inputs.book)
