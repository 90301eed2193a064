"""encapsulate/cli/options.py: the BOOL of ``--tls-verify``/``--dest-tls-verify``
(true or false, never a silent false) as the settings table converts it,
``--quiet``/``--debug`` on every subcommand, and JSON on stdout."""

from __future__ import annotations

import argparse

import pytest

from encapsulate.cli.main import debchunk_main
from encapsulate.cli.options import boolean
from encapsulate.cli.settings import add_settings

TRUE = ["true", "1", "yes", "TRUE", "True", "Yes", " true ", "yes\n"]
FALSE = ["false", "0", "no", "FALSE", "False", "No", " 0"]
NEITHER = ["", " ", "maybe", "on", "off", "y", "n", "t", "f", "2", "-1", "truefalse", "tru", "nope"]


def test_boolean_words() -> None:
    assert [boolean(w) for w in TRUE] == [True] * len(TRUE)
    assert [boolean(w) for w in FALSE] == [False] * len(FALSE)
    for word in NEITHER:
        with pytest.raises(argparse.ArgumentTypeError) as caught:
            boolean(word)
        assert str(caught.value) == f"{word!r} is not a boolean: give true or false"


def parser() -> argparse.ArgumentParser:
    """A parser of container-encapsulate's settings (the table's converters)."""
    p = argparse.ArgumentParser(prog="t")
    add_settings(p, "encapsulate")
    return p


def test_tls_verify_is_none_unless_given() -> None:
    args = parser().parse_args(["oci:x"])
    assert args.tls_verify is None and args.dest_tls_verify is None
    assert args.quiet is False and args.debug is False
    args = parser().parse_args(["oci:x", "--tls-verify", "false", "--dest-tls-verify=TRUE", "-q", "--debug"])
    assert args.tls_verify is False and args.dest_tls_verify is True
    assert args.quiet is True and args.debug is True
    assert parser().parse_args(["oci:x", "--quiet"]).quiet is True


def test_a_word_that_is_not_a_boolean_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["oci:x", "--dest-tls-verify", "maybe"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "t: error: argument --dest-tls-verify: 'maybe' is not a boolean: give true or false"
    )


# Each debchunk subcommand, with what it needs to get past its positional arguments.
SUBCOMMANDS = {
    "map": [],
    "plan": [],
    "encapsulate": ["--rootfs", "/nonexistent", "oci:/nonexistent/out"],
    "rechunk": ["oci:/nonexistent/in", "oci:/nonexistent/out"],
    "inspect": ["oci:/nonexistent"],
    "diff": ["oci:/nonexistent/a", "oci:/nonexistent/b"],
    "report": ["oci:/nonexistent", "-o", "/nonexistent/r.html"],
    "validate": ["oci:/nonexistent"],
}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_takes_the_common_options(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        debchunk_main([command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert "--quiet, -q" in text and "--debug" in text
    if command == "map":
        return
    # Those that read an image take --tls-verify BOOL, refused at parsing
    # (exit 2) before anything is read, when it is not a boolean.
    assert "--tls-verify BOOL" in text
    with pytest.raises(SystemExit) as caught:
        debchunk_main([command, *SUBCOMMANDS[command], "--tls-verify", "maybe"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("'maybe' is not a boolean: give true or false")
