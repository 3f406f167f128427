"""The encrypted overlay's kernel check (overlay-kernel.sh, inlined in the swarm's init and join scripts),
run for real with a stand-in /proc and a stand-in `modprobe -n` that resolves only the modules listed in
$LOADABLE."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.services.swarm.component import init_script, join_script
from components.services.swarm.settings import Swarm
from components.shared.shell import render
from tests.support.skip_policy import as_root

TOOLS = ("grep", "cat", "id", "unshare")  # unshare: as_root for a non-root user
MODPROBE = 'for m in $LOADABLE; do [ "$m" = "$3" ] && exit 0; done; exit 1\n'


def _run(tmp_path: Path, matches: str, modules: str | None, loadable: str = "", encrypt: str = "true") -> subprocess.CompletedProcess[str]:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "ip_tables_matches").write_text(matches)
    if modules is not None:
        (proc / "modules").write_text(modules)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    fake = bin_dir / "modprobe"
    fake.write_text("#!/bin/sh\n" + MODPROBE)
    fake.chmod(0o755)
    script = render("overlay-kernel.sh", "overlay-kernel[swarm-node2]", NODE="swarm-node2", SERVER="swarm-node2", ENCRYPT_OVERLAY=encrypt, PROC_DIR=str(proc))
    # As root (of a user namespace for another user): the kernel lists its matches to root only.
    return subprocess.run(
        as_root(["/bin/sh", "-c", script + "\necho kernel-ok\n"]),
        env={"PATH": str(bin_dir), "LOADABLE": loadable},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_kernel_with_the_matches_and_esp_loaded_passes(tmp_path: Path) -> None:
    result = _run(tmp_path, "u32\npolicy\n", "esp4 16384 0 - Live 0x0\n")
    assert result.returncode == 0, result.stderr
    assert "kernel-ok" in result.stdout


def test_modules_that_modprobe_can_load_pass(tmp_path: Path) -> None:
    result = _run(tmp_path, "state\n", "", loadable="xt_bpf xt_policy esp4")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("matches", "modules", "loadable", "missing"),
    [
        ("policy\n", "esp4 1 0 - Live 0x0\n", "", "needs: xt_u32;"),
        ("u32\n", "", "esp4", "needs: xt_policy;"),
        ("u32\npolicy\n", "", "", "needs: esp4;"),
        ("", "", "", "needs: xt_u32 xt_policy esp4;"),
    ],
)
def test_a_missing_module_fails_naming_what_to_load(tmp_path: Path, matches: str, modules: str, loadable: str, missing: str) -> None:
    result = _run(tmp_path, matches, modules, loadable)
    assert result.returncode != 0
    assert "kernel-ok" not in result.stdout
    assert f"the kernel of swarm-node2 lacks what Docker's encrypted overlay {missing}" in result.stderr
    assert "as root run 'modprobe " in result.stderr and "swarm.encryptOverlay: false" in result.stderr


def test_a_monolithic_kernel_is_judged_by_its_registered_matches(tmp_path: Path) -> None:
    passed = _run(tmp_path, "u32\npolicy\n", None)
    assert passed.returncode == 0, passed.stderr
    assert "ESP support cannot be checked" in passed.stderr
    (tmp_path / "second").mkdir()
    refused = _run(tmp_path / "second", "policy\n", None, loadable="xt_u32")
    assert refused.returncode != 0 and "needs: xt_u32;" in refused.stderr


def test_an_unencrypted_overlay_checks_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, "", "", encrypt="false")
    assert result.returncode == 0 and "kernel-ok" in result.stdout


def test_init_and_join_check_the_kernel_before_touching_the_swarm() -> None:
    settings = Swarm.model_validate({})
    for script in (init_script("swarm-master", "10.20.0.31", settings), join_script("swarm-node2", "10.20.0.32", "swarm-master", "10.20.0.31", settings)):
        assert "ENCRYPT_OVERLAY=true" in script
        assert script.index("can carry an encrypted overlay network") < script.index("for its swarm state")
    unencrypted = Swarm.model_validate({"encryptOverlay": False})
    assert "ENCRYPT_OVERLAY=false" in init_script("swarm-master", "10.20.0.31", unencrypted)
