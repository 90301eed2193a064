"""mapping.dpkg: the database read through the tree: packages, file lists,
diversions, alternatives and the native architecture."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mapping import RootfsOrigin, dpkg, map_tree, read_tree, split_packages
from mapping.dpkg import Database, Diversion
from mapping.errors import MappingError
from tests.sample import Pkg, SampleTree, blob, day


def _database(root: Path) -> Database:
    db = Database.find(read_tree(RootfsOrigin(str(root))))
    assert db is not None
    return db


def _arch_tree(tmp_path: Path) -> tuple[SampleTree, Path]:
    """A tree whose installed dpkg is arm64, among packages of other architectures."""
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("aaa", arch="all", files={"/usr/share/aaa/x": b"a"}))
    t.add(Pkg("dpkg", "1.22.21", arch="arm64", files={"/usr/bin/dpkg": b"d"}))
    t.add(Pkg("zzz", arch="amd64", files={"/usr/bin/zzz": b"z"}))
    return t, t.finish()


def test_architecture_from_arch_native_then_arch_then_status(tmp_path: Path) -> None:
    t, root = _arch_tree(tmp_path)
    admindir = root / t.admindir
    # No arch files: the dpkg package's own architecture (dpkg is always native).
    assert _database(root).architecture() == "arm64"
    # ``arch`` lists the native architecture first, then the foreign ones.
    (admindir / "arch").write_text("riscv64\ni386\n")
    assert _database(root).architecture() == "riscv64"
    # ``arch-native`` (dpkg 1.21+) says it alone.
    (admindir / "arch-native").write_text("  ppc64el \n")
    assert _database(root).architecture() == "ppc64el"
    # Empty files say nothing.
    (admindir / "arch-native").write_text("\n")
    (admindir / "arch").write_text("")
    assert _database(root).architecture() == "arm64"


def test_architecture_of_a_dpkg_in_any_state_and_none(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("aaa", arch="amd64", files={"/usr/bin/aaa": b"a"}))
    root = t.finish()
    # No dpkg paragraph: no answer, not another package's architecture.
    assert _database(root).architecture() is None
    status = root / t.admindir / "status"
    status.write_text(
        status.read_text() + "\nPackage: dpkg\nStatus: deinstall ok config-files\n"
        "Version: 1.22\nArchitecture: s390x\nDescription: package manager\n continued: not a field\n"
    )
    assert _database(root).architecture() == "s390x"


def test_mapping_carries_the_architecture_through_the_split(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(
        Pkg(
            "icons",
            files={"/usr/bin/icons": blob("bin", 10_000), "/usr/share/icons/big.png": blob("png", 400_000)},
            changelog=[day(0), day(30)],
        )
    )
    t.add(Pkg("dpkg", arch="mips64el", files={"/usr/bin/dpkg": b"d"}))
    root = t.finish()
    mapping = map_tree(read_tree(RootfsOrigin(str(root))))
    assert mapping.architecture == "mips64el"
    assert "architecture" not in mapping.to_json()
    # Split as if the previous build had split it: the architecture stays.
    split = split_packages(mapping, prior=["icons", "icons:data"])
    assert "icons:data" in [c.name for c in split.components]
    assert split.architecture == "mips64el"
    # No database, no architecture.
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare/file").write_bytes(b"f")
    assert map_tree(read_tree(RootfsOrigin(str(tmp_path / "bare")))).architecture is None


def test_status_damage_is_reported_then_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("good", files={"/usr/bin/good": b"g"}))
    root = t.finish()
    status = root / t.admindir / "status"
    status.write_text(
        status.read_text() + "\nPackage: noversion\nStatus: install ok installed\nArchitecture: all\n"
        "\nStatus: install ok\nVersion: 1\nArchitecture: all\n"
    )
    caplog.set_level(logging.DEBUG)
    db = _database(root)
    packages, damaged = db.read_status()
    assert [p.name for p in packages] == ["good"]
    assert len(damaged) == 2
    assert "status: package noversion has no valid Version field" in damaged[0]
    assert "paragraph 3 has no valid Package field" in damaged[1]
    assert caplog.records == []
    assert db.packages() == packages
    assert [r.getMessage() for r in caplog.records] == damaged


def test_packages_their_sources_and_lists(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("libc6", "2.41-12", source="glibc", multi_arch="same", files={"/lib/x/libc.so.6": b"c"}))
    t.add(Pkg("linux-image-6", "6.1.8-1", source="linux-s", source_version="6.1.8+1", files={"/k": b"k"}))
    t.add(Pkg("bash", "5.2-2", files={"/bin/bash": b"b"}))
    t.add(Pkg("gone", files={"/usr/bin/gone": b"g"}, status="deinstall ok config-files"))
    db = _database(t.finish())
    by_name = {p.name: p for p in db.packages()}
    assert list(by_name) == ["bash", "libc6", "linux-image-6"]
    libc, kernel, bash = by_name["libc6"], by_name["linux-image-6"], by_name["bash"]
    assert (libc.source, libc.source_version, libc.id) == ("glibc", "2.41-12", "libc6:amd64")
    assert (kernel.source, kernel.source_version, kernel.version) == ("linux-s", "6.1.8+1", "6.1.8-1")
    assert (bash.source, bash.source_version, bash.id) == ("bash", "5.2-2", "bash")
    # Multi-Arch: same lists are info/<pkg>:<arch>.list; "/." is left out.
    assert list(db.listed_paths(libc)) == ["/lib", "/lib/x", "/lib/x/libc.so.6"]
    assert "/bin/bash" in db.listed_paths(bash)


def test_diversions_and_alternatives(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("nano", files={"/bin/nano": b"n"}))
    t.divert("/usr/bin/a", "/usr/bin/a.real", "pkg")
    t.divert("/usr/bin/b", "/usr/bin/b.local", ":")
    t.alternative("editor", "/usr/bin/editor", "/bin/nano")
    root = t.finish()
    (root / t.admindir / "alternatives/pager").write_text(
        "auto\n/usr/bin/pager\npager.1.gz\n/usr/share/man/man1/pager.1.gz\n\n/bin/less\n77\n\n"
    )
    db = _database(root)
    assert db.diversions() == [
        Diversion("/usr/bin/a", "/usr/bin/a.real", "pkg"),
        Diversion("/usr/bin/b", "/usr/bin/b.local", None),
    ]
    assert db.alternative_links() == {
        "/usr/bin/editor",
        "/etc/alternatives/editor",
        "/usr/bin/pager",
        "/etc/alternatives/pager",
        "/etc/alternatives/pager.1.gz",
        "/usr/share/man/man1/pager.1.gz",
    }
    with (root / t.admindir / "diversions").open("a") as f:
        f.write("/usr/bin/c\n")
    caplog.set_level(logging.WARNING)
    assert len(_database(root).diversions()) == 2
    assert any("diversions: 7 lines" in r.getMessage() for r in caplog.records)


def test_find_needs_a_status_file(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t", admindir="usr/lib/sysimage/dpkg")
    root = t.finish()
    assert _database(root).admindir == "usr/lib/sysimage/dpkg"
    # An admindir without status is passed over for the next in the probe order.
    (root / "usr/lib/sysimage/dpkg/status").unlink()
    (root / "var/lib/dpkg").unlink()
    (root / "var/lib/dpkg").mkdir()
    (root / "var/lib/dpkg/status").write_text("")
    assert _database(root).admindir == "var/lib/dpkg"
    (root / "var/lib/dpkg/status").unlink()
    assert Database.find(read_tree(RootfsOrigin(str(root)))) is None


def test_a_database_file_past_the_bound_is_refused_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile tree's status or file list can be of any size: past
    ``MAX_FILE_BYTES`` it is refused with one line naming it, and only one
    byte more than the bound is read."""
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("bash", files={"/usr/bin/bash": blob("bash", 1000)}, changelog=[day(0)]))
    root = t.finish()
    status = (root / t.admindir / "status").stat().st_size
    tree = read_tree(RootfsOrigin(str(root)))
    asked: list[int | None] = []
    read_bytes = type(tree).read_bytes

    def spy(self: object, path: str, limit: int | None = None) -> bytes | None:
        asked.append(limit)
        return read_bytes(tree, path, limit)

    monkeypatch.setattr(type(tree), "read_bytes", spy)
    monkeypatch.setattr(dpkg, "MAX_FILE_BYTES", status - 1)
    with pytest.raises(MappingError) as raised:
        map_tree(tree)
    assert f"{t.admindir}/status: larger than 0 MB, which no dpkg database file is" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert None not in asked
    monkeypatch.setattr(dpkg, "MAX_FILE_BYTES", status)
    assert map_tree(tree).component("bash").files >= 1
