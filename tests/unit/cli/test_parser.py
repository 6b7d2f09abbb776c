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


def test_case_erase_takes_a_reason_code_and_citations_never_free_text() -> None:
    parser = build_parser()
    case = "C01M98983XRES49DSZN3PCKHDVA"
    bases = ["--legal-basis", "UU 27/2022 Pasal 43", "--legal-basis", "UU 27/2022 Pasal 8"]
    erase = ["case", "erase", case, "--reason", "retention_ended"]
    args = parser.parse_args([*erase, "--role", "data_protection_officer", *bases])
    assert (args.reason, args.legal_basis) == (
        "retention_ended",
        ["UU 27/2022 Pasal 43", "UU 27/2022 Pasal 8"],
    )
    for wrong in (
        ["--reason", "Siti's mother asked"],
        ["--reason", "subject_request", "--legal-basis", "Siti Aminah 2015-04-01"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["case", "erase", case, "--role", "data_protection_officer", *wrong])
