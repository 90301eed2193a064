"""mapping.base: a tree less its base (``--keep-base``): what the layers above
the base add stays owned and sized, what the base already holds is left
out, and what they remove is whited out at its topmost path."""

from __future__ import annotations

import os
from pathlib import Path

from mapping import RootfsOrigin, above_base, build_mapping, read_tree


def _tree(root: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        os.utime(root / path, (1_700_000_000, 1_700_000_000))
    for new, old in (links or {}).items():
        os.link(root / old, root / new)
    return root


def test_only_what_the_layers_above_add_is_owned(tmp_path: Path) -> None:
    base = _tree(
        tmp_path / "base",
        {
            "usr/bin/same": b"same",
            "usr/bin/changed": b"old",
            "etc/gone/a": b"a",
            "etc/gone/b": b"b",
            "opt/x": b"x",
        },
    )
    full = _tree(
        tmp_path / "full",
        {"usr/bin/same": b"same", "usr/bin/changed": b"new!", "usr/bin/added": b"added", "opt": b"file now"},
    )
    mapping = build_mapping(RootfsOrigin(str(full)))
    above = above_base(mapping, read_tree(RootfsOrigin(str(base))))
    tree = above.mapping.tree
    assert tree is mapping.tree and tree is not None
    owned = sorted(e.path for e, o in zip(tree.entries, above.mapping.owners, strict=True) if o >= 0)
    assert owned == ["opt", "usr/bin/added", "usr/bin/changed"]
    # Components are sized by what they own of the new content only.
    assert sum(c.size for c in above.mapping.components) == len(b"new!") + len(b"added") + len(b"file now")
    assert sum(c.files for c in above.mapping.components) == 3
    assert all(c.files for c in above.mapping.components)
    # A removed subtree is whited out once, at its top; a directory that became
    # a file is whited out too (the file is written above the whiteout).
    assert above.whiteouts == ("etc", "opt")


def test_a_hardlink_group_is_written_whole(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base", {"usr/lib/one": b"content"})
    full = _tree(tmp_path / "full", {"usr/lib/one": b"content"}, links={"usr/lib/two": "usr/lib/one"})
    mapping = build_mapping(RootfsOrigin(str(full)))
    above = above_base(mapping, read_tree(RootfsOrigin(str(base))))
    assert above.mapping.tree is not None
    owned = sorted(
        e.path for e, o in zip(above.mapping.tree.entries, above.mapping.owners, strict=True) if o >= 0
    )
    # usr/lib/one is in the base unchanged, but its new link makes it one
    # inode with usr/lib/two: both are written, in one layer.
    assert owned == ["usr/lib/one", "usr/lib/two"]
    assert above.whiteouts == ()


def test_nothing_added_owns_nothing(tmp_path: Path) -> None:
    files = {"usr/bin/a": b"a", "etc/b": b"b"}
    base = _tree(tmp_path / "base", files)
    full = _tree(tmp_path / "full", files)
    above = above_base(build_mapping(RootfsOrigin(str(full))), read_tree(RootfsOrigin(str(base))))
    assert above.mapping.components == () and set(above.mapping.owners) <= {-1}
    assert above.whiteouts == ()
