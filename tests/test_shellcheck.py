"""Every remote script file passes shellcheck (POSIX sh), and renders with its values quoted."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from components.shell import SCRIPTS, render


def test_every_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing: apt-get install -y shellcheck")
    files = sorted(SCRIPTS.glob("*.sh"))
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
