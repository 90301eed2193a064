"""How the read-back tools write numbers, digests and tables (``encapsulate.tools.text``)."""

from __future__ import annotations

from encapsulate.tools.text import component_names, how_to_read_layers, human_size, short_digest, table

HEX = "0123456789abcdef" * 4


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 512, 1536, 137.7 * 2**20, 3 * 2**40, 5 * 2**50)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "137.7 MiB",
        "3.0 TiB",
        "5120.0 TiB",
    ]


def test_short_digest() -> None:
    assert short_digest(f"sha256:{HEX}") == "sha256:0123456789ab"
    # What is not a digest is shown as it is.
    assert short_digest("sha256:xyz") == "sha256:xyz"
    assert short_digest("") == ""


def test_table_and_names() -> None:
    rows = [("A", "BB"), ("ccc", "d"), ("x" * 10, "y")]
    assert table(rows, (0,)) == ["A           BB", "ccc          d", "xxxxxxxxxx   y"]
    assert table(rows, (0,), widest=4) == ["A     BB", "ccc    d", "xxx…   y"]
    assert component_names([]) == "-"
    assert component_names(["a", "b"]) == "a, b"
    assert component_names(["a", "b", "c", "d", "e"], 2) == "a, b +3"


def test_how_to_read_layers() -> None:
    assert how_to_read_layers("oci:/x:v1") == "drop --no-layers"
    assert how_to_read_layers("oci-archive:/x.tar") == "drop --no-layers"
    assert how_to_read_layers("registry:h/r:1") == "pass --fetch"
