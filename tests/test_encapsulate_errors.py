"""The encapsulate stage's errors (encapsulate/errors.py): one line naming
where, what and what to do; ``ConfigError`` a usage error (exit 2, with
the usage), every other ``EncapsulateError`` a failure (exit 1); strings
from an image escaped in them."""

from __future__ import annotations

from pathlib import Path

import pytest

import encapsulate
from chunker import ChunkerError
from encapsulate import BuildConfig, RootfsOrigin
from encapsulate.cli.main import debchunk_main
from encapsulate.errors import ConfigError, EncapsulateError
from encapsulate.write.ostree_commit import ostree_layout
from mapping import DebchunkError, Entry, EntryType, MappingError, Tree


def test_message_is_where_what_hint() -> None:
    e = EncapsulateError("not an OCI layout", where="oci:/srv/img", hint="give an empty directory")
    assert str(e) == "oci:/srv/img: not an OCI layout; give an empty directory"
    assert (e.what, e.where, e.hint) == ("not an OCI layout", "oci:/srv/img", "give an empty directory")
    assert str(EncapsulateError("no timestamp", hint="set SOURCE_DATE_EPOCH")) == (
        "no timestamp; set SOURCE_DATE_EPOCH"
    )
    assert (
        str(ConfigError("--max-layers 1: too few", where="plan.json")) == "plan.json: --max-layers 1: too few"
    )
    assert str(ConfigError("--max-layers 1: too few")) == "--max-layers 1: too few"


def test_one_base_for_the_stage_and_config_errors_among_them() -> None:
    assert issubclass(ConfigError, EncapsulateError) and issubclass(EncapsulateError, DebchunkError)
    # The package exports these very classes (``except encapsulate.ConfigError`` works).
    assert encapsulate.ConfigError is ConfigError and encapsulate.EncapsulateError is EncapsulateError
    assert encapsulate.DebchunkError is DebchunkError
    # The other stages' errors are not this stage's.
    assert not issubclass(MappingError, EncapsulateError) and not issubclass(ChunkerError, EncapsulateError)
    with pytest.raises(EncapsulateError):
        raise ConfigError("--format-version 3")


def test_the_library_raises_config_error_for_options_out_of_range(tmp_path: Path) -> None:
    for fields, message in (({"max_layers": 1}, "--max-layers 1"), ({"max_layers": 501}, "--max-layers 501")):
        config = BuildConfig(RootfsOrigin(str(tmp_path)), f"oci:{tmp_path}/out", **fields)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=message):
            config.check()
    BuildConfig(RootfsOrigin(str(tmp_path)), f"oci:{tmp_path}/out", max_layers=2).check()


@pytest.fixture
def no_changelogs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tree with no changelog, and no SOURCE_DATE_EPOCH: the build has no time."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/hostname").write_text("box\n")
    return tmp_path / "tree"


def test_a_config_error_exits_2_with_the_usage(
    no_changelogs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["encapsulate", "--rootfs", str(no_changelogs), f"oci:{tmp_path}/out", "--max-layers", "1"]
    assert debchunk_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: debchunk encapsulate ")
    assert err[-1].startswith("debchunk: error: --max-layers 1: ")
    assert not (tmp_path / "out").exists()
    # --debug lets the error itself through, traceback and all.
    with pytest.raises(ConfigError):
        debchunk_main([*args, "--debug"])


def test_any_other_encapsulate_error_exits_1_in_one_line(
    no_changelogs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["encapsulate", "--rootfs", str(no_changelogs), f"oci:{tmp_path}/out", "--quiet"]
    assert debchunk_main(args) == 1
    err = capsys.readouterr().err
    assert err == (
        "debchunk: error: no timestamp for the image: the tree has no Debian changelogs; "
        "set SOURCE_DATE_EPOCH\n"
    )
    with pytest.raises(EncapsulateError) as caught:
        debchunk_main([*args, "--debug"])
    assert not isinstance(caught.value, ConfigError) and caught.value.hint == "set SOURCE_DATE_EPOCH"


def test_a_name_from_an_image_is_escaped_in_the_error() -> None:
    """DESIGN.md, "Trust": strings from images are escaped before a one-line
    error sees them.  A name that is not UTF-8 (refused by the ostree
    layout) and also holds a newline, an escape sequence and a forged
    error line must give one line of printable characters."""
    name = b"srv/caf\xe9\n\x1b[2Jcontainer-encapsulate: error: forged".decode("utf-8", "surrogateescape")
    tree = Tree(
        "oci:/images/stranger:t",
        [Entry("", EntryType.DIR, 0o755, 0, 0), Entry(name, EntryType.FILE, 0o644, 0, 0)],
    )
    with pytest.raises(EncapsulateError) as caught:
        ostree_layout(tree)
    message = str(caught.value)
    assert "srv/caf\\xe9" in message
    assert message.isprintable(), repr(message)
