"""Every remote script file passes shellcheck (POSIX sh), and renders with its values quoted; so does
every other shell script of the repository (in the dialect its shebang names)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from components.shared.shell import render, script_files
from tools.offline import ROOT

# The shell scripts outside components/ (the operator's and CI's own, and the lab images' entry points and
# stand-ins); upstream files kept as fixtures are not ours to lint.
OTHER_SCRIPTS = (
    ".ci/run", "docs/jenkins-deploy.sh", "lab/machine-run.sh", "tools/backup-pulumi-state.sh", "tools/test.sh",
    *sorted(f"lab/image-files/{path.name}" for path in (ROOT / "lab" / "image-files").glob("*.sh")),
)


def test_every_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing: apt-get install -y shellcheck")
    files = sorted(script_files().values())
    assert files, "no script files found"
    result = subprocess.run(
        ["shellcheck", "--shell=sh", "--external-sources", *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_values_are_quoted_in_the_header_not_the_body() -> None:
    rendered = render("prelude.sh", "probe", VALUE="a'b; rm -rf /")
    assert "VALUE='a'\"'\"'b; rm -rf /'" in rendered
    with pytest.raises(ValueError, match="UPPER_CASE"):
        render("prelude.sh", "probe", lower="x")
    out = subprocess.run(["sh", "-c", rendered + 'printf %s "$VALUE"'], capture_output=True, text=True)
    assert out.stdout == "a'b; rm -rf /"


def test_a_script_finds_the_system_tools_of_sbin_as_a_non_root_login() -> None:
    """Debian gives a non-root login a PATH without sbin (the lab's rehearsal met `sysctl: command not
    found` on a database server): the prelude adds the sbin directories."""
    rendered = render("prelude.sh", "probe")
    out = subprocess.run(["sh", "-c", rendered + "command -v sysctl"], capture_output=True, text=True,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip().endswith("/sbin/sysctl"), out.stdout + out.stderr


def _is_shell(name: str) -> bool:
    path = ROOT / name
    if name.endswith(".sh"):
        return True
    if not path.is_file():
        return False
    with path.open("rb") as file:
        first = file.readline()
    return first.startswith(b"#!") and first.rstrip().endswith((b"/sh", b" sh", b"bash"))


def test_every_other_shell_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing: apt-get install -y shellcheck")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    remote = {str(path.relative_to(ROOT)) for path in script_files().values()}
    found = {name for name in tracked if name not in remote and not name.startswith("tests/support/fixtures/") and _is_shell(name)}
    assert found == set(OTHER_SCRIPTS), "a new shell script: add it to OTHER_SCRIPTS"
    result = subprocess.run(["shellcheck", *OTHER_SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
