"""encapsulate.cli.settings: one table for every command's arguments: each
command gets exactly its settings, their converters run, and the
BuildConfig made from a command line holds typed values."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest

from encapsulate import CommitOrigin, Compression, ConfigError, Format, ImageOrigin, RootfsOrigin
from encapsulate.cli.main import debchunk_parser, encapsulate_parser
from encapsulate.cli.settings import EVERY, SETTINGS, add_settings, config_from_args, options_markdown
from encapsulate.oci.imgref import ImageRef, RegistryOptions


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command, exit_on_error=False)
    add_settings(parser, command)
    return parser


def _flags(command: str) -> set[str]:
    return {flag for action in _parser(command)._actions for flag in action.option_strings} - {"-h", "--help"}


def test_no_command_takes_a_flag_twice() -> None:
    for command in EVERY:
        taken = Counter(f for s in SETTINGS if command in s.commands for f in s.flags)
        assert [f for f, n in taken.items() if n > 1] == [], command


def test_shared_options_come_from_the_one_table() -> None:
    assert {"--max-layers", "--prior", "--prior-plan", "--json", "--tls-verify", "--quiet"} <= _flags("plan")
    assert {"--json", "--quiet", "--debug", "--repo", "--rootfs"} <= _flags("map")
    assert "--max-layers" not in _flags("map") and "--from" not in _flags("map")
    assert "--from" not in _flags("rechunk") and "--repo" not in _flags("rechunk")
    for command in ("inspect", "diff", "report", "validate"):
        assert {"--tls-verify", "--quiet", "--debug"} <= _flags(command), command
    # The subcommands debchunk builds take what the table gives them.
    sub = next(a for a in debchunk_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("map", "plan", "encapsulate", "rechunk"):
        parser = sub.choices[command]
        flags = {f for a in parser._actions for f in a.option_strings} - {"-h", "--help"}
        assert flags == _flags(command), command


def test_converters_run_on_every_command() -> None:
    assert _parser("plan").parse_args(["--max-layers", "7", "--tls-verify", "no"]).max_layers == 7
    for command, args in (("plan", ["--max-layers", "x"]), ("inspect", ["oci:x", "--tls-verify", "maybe"])):
        with pytest.raises(argparse.ArgumentError):
            _parser(command).parse_args(args)


def test_the_command_line_becomes_typed_values() -> None:
    args = encapsulate_parser().parse_intermixed_args(
        [
            "--repo", "/r", "ref", "oci:/out:v2", "--format", "plain", "--compression", "zstd",
            "--prior", "registry:h:5000/os:1", "-l", "a=1", "-l", "b=2", "-l", "a-", "--cmd", "sh",
            "--cmd=-c", "--copymeta", "version", "--tls-verify", "false",
        ]
    )  # fmt: skip
    config = config_from_args(args, 5)
    assert config.origin == CommitOrigin("/r", "ref")
    assert config.destination == ImageRef("oci", "/out", "v2")
    assert config.prior == ImageRef("registry", "h:5000/os:1")
    assert config.format is Format.PLAIN and config.compression is Compression.ZSTD
    assert dict(config.labels) == {"b": "2"} and config.remove_labels == ("a",)
    assert config.cmd == ("sh", "-c") and config.copymeta == ("version",)
    assert config.registry == RegistryOptions(None, False) and config.dest_registry == RegistryOptions()
    assert config.epoch == 5


def test_origins_from_the_command_line() -> None:
    parse = encapsulate_parser().parse_intermixed_args
    assert config_from_args(parse(["--rootfs", "/t", "oci:o"]), None).origin == RootfsOrigin("/t")
    image = config_from_args(parse(["--from", "oci:src:1", "oci:o"]), None).origin
    assert isinstance(image, ImageOrigin) and image.imgref == ImageRef("oci", "src", "1")
    with pytest.raises(ConfigError, match="give one origin"):
        config_from_args(parse(["--rootfs", "/t", "--from", "oci:s", "oci:o"]), None)
    with pytest.raises(ConfigError, match="--from: ftp:x: unknown transport"):
        config_from_args(parse(["--from", "ftp:x", "oci:o"]), None)
    with pytest.raises(ConfigError, match="--label 'x': give KEY=VALUE"):
        config_from_args(parse(["--rootfs", "/t", "oci:o", "-l", "x"]), None)


def test_the_readme_table_lists_container_encapsulates_options_only() -> None:
    table = options_markdown()
    assert "`--max-layers N`" in table and "`--from IMGREF`" in table
    assert (
        "`--mapping FILE`" not in table
        and "`--fetch`" not in table
        and "IMGREF |" not in table.split("\n")[2]
    )
