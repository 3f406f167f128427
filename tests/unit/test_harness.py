"""The offline harness itself: it must see what the engine sees, secrets included."""

from __future__ import annotations

from pathlib import Path

from tools.offline import is_secret, plaintext_strings, run_program, secret_strings

PROGRAM = '''
import pulumi
import pulumi_random as random
import pulumi_command as command

password = random.RandomPassword("db-password", length=20)
command.local.Command("derived", create=password.result.apply(lambda p: f"echo {p}"))
pulumi.export("where", pulumi.Config().require("where"))
'''


def _project(tmp_path: Path) -> Path:
    (tmp_path / "__main__.py").write_text(PROGRAM)
    (tmp_path / "Pulumi.scratch.yaml").write_text(
        "config:\n  samarth-infra:where: here\n  samarth-infra:token:\n    secure: v1:abc\n"
    )
    return tmp_path


def test_additional_secret_outputs_are_marked_secret_like_the_engine_does(tmp_path: Path) -> None:
    run = run_program("scratch", root=_project(tmp_path), secrets={"token": "t0ken"})
    assert run.error is None, run.error
    password = run.named("random:index/randomPassword:RandomPassword", "db-password")
    assert "result" in password.additional_secret_outputs
    assert is_secret(password.outputs["result"])
    generated = next(secret_strings(password.outputs))
    # Because the output is marked, a string derived from it stays secret, as under the real engine;
    # an unmarked mock would have handed the program plaintext here.
    derived = run.named("command:local:Command", "derived")
    assert is_secret(derived.inputs["create"])
    assert not any(generated in text for text in plaintext_strings(derived.inputs))
    assert run.exports == {"where": "here"}


def test_secure_config_values_are_replaced_by_test_secrets(tmp_path: Path) -> None:
    run = run_program("scratch", root=_project(tmp_path), secrets={"token": "t0ken"})
    assert run.error is None
    # The stack file's ciphertext never reaches the program; the stand-in does, as a secret.
    from pulumi.runtime import config as runtime_config

    assert runtime_config.get_config("samarth-infra:token") == "t0ken"
    assert runtime_config.is_config_secret("samarth-infra:token")


ALIASED = '''
import pulumi
import pulumi_random as random

class Box(pulumi.ComponentResource):
    def __init__(self, name):
        super().__init__("samarth:test:Box", name)
        random.RandomPassword(f"{name}-password", length=8, opts=pulumi.ResourceOptions(
            parent=self, aliases=[pulumi.Alias(name="old-password", parent=pulumi.ROOT_STACK_RESOURCE)]))

Box("box")
'''


def test_aliases_are_recorded_as_the_urns_they_stand_for(tmp_path: Path) -> None:
    (tmp_path / "__main__.py").write_text(ALIASED)
    (tmp_path / "Pulumi.scratch.yaml").write_text("config: {}\n")
    run = run_program("scratch", root=tmp_path, secrets={})
    assert run.error is None, run.error
    password = run.named("random:index/randomPassword:RandomPassword", "box-password")
    assert password.urn == "urn:pulumi:scratch::samarth-infra::samarth:test:Box$random:index/randomPassword:RandomPassword::box-password"
    assert password.aliases == ["urn:pulumi:scratch::samarth-infra::random:index/randomPassword:RandomPassword::old-password"]
