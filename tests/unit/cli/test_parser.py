"""The command line's own pages: ``--version``, and a ``--help`` page with a description
and an example for every subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from lintas.cli import main
from lintas.cli._parser import build_parser


def _subcommands(
    parser: argparse.ArgumentParser, path: str = "lintas"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from _subcommands(sub, f"{path} {name}")


def test_every_subcommand_has_a_description_and_an_example() -> None:
    pages = dict(_subcommands(build_parser()))
    assert len(pages) > 30  # the walk reaches the nested actions too
    for path, parser in pages.items():
        assert parser.description, f"{path} --help has no description"
        assert parser.epilog, f"{path} --help has no example"
        example = parser.epilog.split("example:\n", 1)[-1].strip()
        assert example.startswith(path), f"{path} --help: {example!r} is not an example of it"
        assert f"example:\n  {example}" in parser.format_help()  # on its own line, unwrapped


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"lintas {version('lintas')}\n"


def test_a_failure_is_said_on_standard_error_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["case", "show", "not-a-case"]) == 2  # exit codes unchanged
    said = capsys.readouterr()
    assert said.out == ""
    assert "'not-a-case' is not a lintas case id" in said.err
