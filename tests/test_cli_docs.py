"""docs/cli.md shows each command's `--help` as the command prints it: every fenced block that
starts with `Usage: nnspec COMMAND` must equal that output, and every command has one.

`python tests/test_cli_docs.py` rewrites the blocks from the real output (after changing an
option or a docstring)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a clone

from nnspec.cli import main  # noqa: E402

CLI_MD = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"```\n(Usage: nnspec (\S+) .*?)\n```", re.S)


def help_text(command: str) -> str:
    """`nnspec COMMAND --help` at click's standard 80-column width."""
    result = CliRunner().invoke(main, [command, "--help"], prog_name="nnspec", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output.rstrip("\n")


def regenerated(text: str) -> str:
    return BLOCK.sub(lambda m: f"```\n{help_text(m.group(2))}\n```", text)


def test_every_help_block_in_cli_md_is_the_real_help_output():
    text = CLI_MD.read_text()
    for block, command in BLOCK.findall(text):
        assert block == help_text(command), f"docs/cli.md is stale for `nnspec {command} --help`: " \
                                            "run `python tests/test_cli_docs.py`"


def test_every_command_is_in_cli_md_with_its_help():
    shown = {command for _, command in BLOCK.findall(CLI_MD.read_text())}
    assert set(main.commands) - shown == set(), "add a `## nnspec COMMAND` section with a ```Usage: block"


def test_cli_md_keeps_no_leftovers():
    text = CLI_MD.read_text()
    assert "<!--" not in text and "other issues" not in text


if __name__ == "__main__":
    CLI_MD.write_text(regenerated(CLI_MD.read_text()))
    print(f"rewrote the --help blocks of {CLI_MD}")
