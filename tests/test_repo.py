"""The repository's promises to a new user: README commands and CI agree."""

from __future__ import annotations

import re


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_block = next(b for b in blocks if "pytest" in b)
    command = next(line for line in test_block.splitlines() if "pytest" in line)
    ci = (repo_root / ".ci" / "run").read_text()
    assert command.strip() in ci


def test_cli_help_lists_commands(run_cli):
    result = run_cli("--help", check=True)
    assert "data" in result.stdout


def test_cli_entry_does_not_import_torch():
    """`roadscene --help` stays instant: heavy libraries are imported inside commands."""
    import subprocess
    import sys

    code = (
        "import sys, roadscene.cli.app; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
