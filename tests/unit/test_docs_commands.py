"""Every shell command in the README and docs/ can be copied and pasted.

Each `python -m MODULE` named answers --help; each path of this repository named exists; and every page
of docs/ is linked from the README. The commands that need neither real servers nor the Pulumi CLI run
for real in tests/tools/test_docs_commands_run.py.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.entry_points import run_module

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.M | re.S)
MODULE = re.compile(r"\bpython3? -m ([A-Za-z_]\w*(?:\.\w+)*)")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:tools|docs|benchmarks|lab|tests|components|policies|\.ci)/[\w./-]*[\w-])")
# Written by commands (`python -m lab up`), not part of a checkout.
GENERATED = ("lab/state/",)
# Run for real (tests/tools/test_docs_commands_run.py): offline, quick, and changing nothing in the checkout.
RUNNABLE = re.compile(r"^venv/bin/python -m tools\.(plan --stack \S+|guardrails( \S+)*|promote .*--dry-run.*)$")


def commands(page: Path) -> list[str]:
    """The commands of a page's shell blocks: continuation lines joined, comments dropped, `&&` split."""
    found = []
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                found += [part.strip() for part in line.split("&&")]
    return found


ALL = sorted({(page.relative_to(ROOT).as_posix(), command) for page in PAGES for command in commands(page)})


@functools.cache
def answers_help(module: str) -> subprocess.CompletedProcess[str]:
    """``python -m module --help``: this repository's modules in this process (as tests/unit/test_cli.py
    runs them; the runnable commands below start real interpreters), any other in an interpreter."""
    if (ROOT / module.split(".")[0]).is_dir():
        return run_module(module, "--help")
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_pages_have_commands() -> None:
    assert len(ALL) > 10


@pytest.mark.parametrize(("page", "command"), ALL)
def test_modules_answer_help_and_paths_exist(page: str, command: str) -> None:
    for module in MODULE.findall(command):
        helped = answers_help(module)
        assert helped.returncode == 0, f"{page}: `{command}`: python -m {module} --help fails:\n{helped.stderr}"
    for path in REPO_PATH.findall(command):
        if "<" not in path and "*" not in path and not path.startswith(GENERATED):
            assert (ROOT / path).exists(), f"{page}: `{command}` names {path}, which does not exist"


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"link these from README.md: {unlinked}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"
