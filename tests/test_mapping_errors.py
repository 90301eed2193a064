"""The stages' one error base: its message form, and no KeyError, StopIteration
or OSError reaching a caller of mapping and chunker."""

from __future__ import annotations

from pathlib import Path

import pytest

from chunker import ChunkerError, make_plan, pack
from mapping import Component, DebchunkError, Mapping, MappingError, RootfsOrigin, build_mapping
from mapping.errors import show
from mapping.rootfs import _xattrs
from tests.sample import build_sample


def test_message_is_where_what_hint() -> None:
    e = DebchunkError("not a number", "SOURCE_DATE_EPOCH", "fix or unset it")
    assert str(e) == "SOURCE_DATE_EPOCH: not a number; fix or unset it"
    assert (e.what, e.where, e.hint) == ("not a number", "SOURCE_DATE_EPOCH", "fix or unset it")
    assert str(DebchunkError("bad", hint="retry")) == "bad; retry"
    assert str(DebchunkError("bad", "f.json")) == "f.json: bad"
    # The one-string form of every existing call still reads the same.
    single = MappingError("tree: no such directory; pass --rootfs a directory")
    assert str(single) == "tree: no such directory; pass --rootfs a directory"
    assert single.where is None and single.hint is None
    assert issubclass(MappingError, DebchunkError) and issubclass(ChunkerError, DebchunkError)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Mapping:
    return build_mapping(RootfsOrigin(str(build_sample(tmp_path_factory.mktemp("errors") / "t"))))


def test_lookups_raise_mapping_error(sample: Mapping) -> None:
    with pytest.raises(MappingError, match="no component 'nosuch'"):
        sample.component("nosuch")
    with pytest.raises(MappingError, match="no component 'nosuch'"):
        sample.files_of("nosuch")
    with pytest.raises(MappingError, match="no entry 'no/such/path'"):
        sample.owner("no/such/path")
    # A directory has no owner: None, not an error.
    assert sample.owner("usr") is None
    assert sample.component("glibc").name == "glibc"
    back = Mapping.from_json(sample.to_json())
    with pytest.raises(MappingError, match="no tree"):
        back.owner("usr/bin/bash")
    assert back.files_of("glibc") == []
    with pytest.raises(MappingError, match="no component"):
        back.files_of("nosuch")


def test_bad_plans_raise_chunker_error() -> None:
    comps = [Component("a", "package", size=1), Component("b", "package", size=1)]
    with pytest.raises(ChunkerError, match="more than one group"):
        make_plan(comps, [["a"], ["a", "b"]], 4)
    with pytest.raises(ChunkerError, match="'c'"):
        make_plan(comps, [["a", "c"]], 4)
    with pytest.raises(ChunkerError, match="given twice"):
        pack([*comps, comps[0]], 4)


def test_xattr_errors_are_mapping_errors(tmp_path: Path) -> None:
    # A path that vanished under the walk: ENOENT is neither "unsupported" nor
    # "no such attribute", so it is reported, as a MappingError naming it.
    with pytest.raises(MappingError) as raised:
        _xattrs(str(tmp_path / "gone"))
    assert raised.value.where is not None and raised.value.where.endswith("gone")
    assert "cannot list extended attributes" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("usr/bin/bash", "usr/bin/bash"),
        ("", "."),
        ("a b/ünïcode", "a b/ünïcode"),
        (b"caf\xe9".decode("utf-8", "surrogateescape"), "caf\\xe9"),
        ("two\nlines\r\ttab", "two\\nlines\\r\\ttab"),
        ("\x1b[2J\x1b]0;title\x07clear", "\\x1b[2J\\x1b]0;title\\x07clear"),
        ("del\x7f c1\x85 sep\u2028 bidi\u202e", "del\\x7f c1\\x85 sep\\u2028 bidi\\u202e"),
        # A lone surrogate that stands for no byte, as JSON's "\ud800" reads.
        ("lone\ud800 \x1b", "lone\\ud800 \\x1b"),
    ],
)
def test_names_from_images_are_shown_as_one_printable_line(name: str, shown: str) -> None:
    """A string from an image in a message: nothing a terminal acts on, no
    line break (DESIGN.md, "Trust: Escaped")."""
    assert show(name) == shown
    assert show(name).isprintable()
    message = str(MappingError("cannot read it", show(name), "pull it again"))
    assert "\n" not in message and message.isprintable()
