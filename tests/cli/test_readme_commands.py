"""README.md's command table says what `sensorfuse --help` says.

Every command `sensorfuse --help` lists has a row in the table of README's "Command line"
section and every row names a command it lists; a row's actions (`models build / list /
verify`) are that command's actions, all of them; every flag a row shows is an option of
that command.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sensorfuse.engine.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rows() -> list[tuple[str, list[str]]]:
    """(the first cell's text, the `sensorfuse ...` invocations in it) of each table row."""
    section = README.read_text().split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) < 3 or not cells[1].strip().startswith("`sensorfuse"):
            continue
        first = cells[1].replace("\\|", "|")
        rows.append((first.strip(), [code.split()[1:] for code in re.findall(r"`(sensorfuse [^`]*)`", first)]))
    return rows


def help_commands() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    listing = out.stdout.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0]
    return re.findall(r"^ {4}(\w[\w-]*)", listing, flags=re.MULTILINE)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_table_and_help_name_the_same_commands() -> None:
    listed = help_commands()
    assert {"run", "status", "demo", "replay", "log"} <= set(listed)
    in_readme = {words[0] for _, invocations in readme_rows() for words in invocations}
    assert sorted(set(listed) - in_readme) == [], "commands `sensorfuse --help` lists but README's table does not"
    assert sorted(in_readme - set(listed)) == [], "README rows naming commands `sensorfuse --help` does not list"


def test_each_row_shows_real_actions_and_flags() -> None:
    commands = subparsers(build_parser())
    actions_shown: dict[str, set[str]] = {}
    for cell, invocations in readme_rows():
        for command, *words in invocations:
            parser = commands[command]
            actions = subparsers(parser)
            flags = [w.strip("[]") for w in words if w.strip("[").startswith("-")]
            if actions:
                leading = words[:next((i for i, w in enumerate(words) if w.startswith(("-", "["))), len(words))]
                shown = [w for w in leading if re.fullmatch(r"[a-z]+", w)]
                assert set(shown) <= set(actions), f"{cell}: {command} has no action {set(shown) - set(actions)}"
                actions_shown.setdefault(command, set()).update(shown)
                options = {o for a in actions.values() for act in a._actions for o in act.option_strings}
            else:
                options = {o for act in parser._actions for o in act.option_strings}
            assert set(flags) <= options, f"{cell}: {command} has no option {set(flags) - options}"
    for command, shown in actions_shown.items():
        assert shown == set(subparsers(commands[command])), f"README shows {command} {sorted(shown)} only"


@pytest.mark.parametrize("cell", ["`sensorfuse graph check GRAPH` / `sensorfuse graph show GRAPH [-o FILE] [--force]`",
                                  "`sensorfuse keys generate DIR [--force]`"])
def test_rows_are_parsed_as_written(cell: str) -> None:
    assert cell in [c for c, _ in readme_rows()]
