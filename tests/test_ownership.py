"""Every ownership rule of DESIGN.md, on generated trees, through both readers."""

from __future__ import annotations

import datetime as dt
import gzip
import math
import os
from pathlib import Path

import pytest

from mapping import CommitOrigin, Mapping, MappingError, Origin, RootfsOrigin, map_tree, read_tree
from mapping.changelog import CHANGES_PRIOR, CVE_WEIGHT, DEFAULT_CHANGE_PROBABILITY
from mapping.ownership import is_volatile_path
from tests.sample import KVER, Pkg, SampleTree, blob, day


@pytest.fixture(scope="module", params=["commit", "rootfs"])
def sample_mapping(
    request: pytest.FixtureRequest, sample_tree: Path, sample_repos: dict[str, Path]
) -> Mapping:
    if request.param == "commit":
        return build_mapping(CommitOrigin(str(sample_repos["bare-user"]), "sample"))
    return build_mapping(RootfsOrigin(str(sample_tree)))


def build_mapping(origin: Origin, reference_date: dt.datetime | None = None) -> Mapping:
    """The ownership rules' mapping, before packages are split
    (tests/test_split.py covers ``mapping.build_mapping``'s split)."""
    return map_tree(read_tree(origin), reference_date=reference_date)


def owner(m: Mapping, path: str) -> str:
    c = m.owner(path)
    assert c is not None, path
    return c.name


def test_binaries_group_by_source_package(sample_mapping: Mapping) -> None:
    glibc = sample_mapping.component("glibc")
    assert glibc.kind == "package"
    assert glibc.packages == ("libc-bin", "libc6:amd64", "locales")
    assert glibc.version == "2.41-12"
    # usrmerge: /lib/... and /sbin/... are listed, the files are under usr/.
    assert owner(sample_mapping, "usr/lib/x86_64-linux-gnu/libc.so.6") == "glibc"
    assert owner(sample_mapping, "usr/sbin/ldconfig") == "glibc"
    # /etc is usr/etc in a commit.
    assert owner(sample_mapping, "usr/etc/ld.so.conf") == "glibc"
    assert sample_mapping.component("systemd").packages == ("libsystemd0:amd64", "systemd")


def test_kernel_is_one_component_and_initramfs_is_volatile(sample_mapping: Mapping) -> None:
    kernel = sample_mapping.component("linux-signed-amd64")
    assert kernel.packages == (f"linux-image-{KVER}",)
    assert kernel.version == "6.1.8+1"
    moddir = f"usr/lib/modules/{KVER}"
    assert owner(sample_mapping, f"{moddir}/vmlinuz") == "linux-signed-amd64"  # listed as /boot/vmlinuz-K
    assert owner(sample_mapping, f"{moddir}/kernel/fs/ext4.ko") == "linux-signed-amd64"
    # depmod output sits in a directory only the kernel lists: it is the kernel's.
    assert owner(sample_mapping, f"{moddir}/modules.alias") == "linux-signed-amd64"
    assert owner(sample_mapping, f"{moddir}/initramfs.img") == "volatile:initramfs"


def test_volatile_state(sample_mapping: Mapping) -> None:
    # Three volatile components: they change on different occasions.
    for path in (
        "usr/share/dpkg/database/status",
        "usr/share/dpkg/database/info/libc6:amd64.list",
        "var/lib/dpkg",
    ):
        assert owner(sample_mapping, path) == "volatile:dpkg", path
    for path in (
        "usr/etc/ld.so.cache",
        "usr/etc/machine-id",
        "usr/etc/ssh/ssh_host_ed25519_key",
        "usr/bin/editor",
        "usr/etc/alternatives/editor",
    ):
        assert owner(sample_mapping, path) == "volatile", path
    # Rewritten by every build, whatever the tree's layout.
    for path in ("etc/ssl/certs/java/cacerts", "usr/etc/ssl/certs/java/cacerts"):
        assert is_volatile_path(path), path
    assert not is_volatile_path("usr/etc/ssl/certs/java/cacerts.bak")
    for name in ("volatile", "volatile:initramfs"):
        assert sample_mapping.component(name).kind == "volatile"
        assert sample_mapping.component(name).change_probability == 1.0
    # The dpkg database changes exactly when some package does.
    db = sample_mapping.component("volatile:dpkg")
    keep = math.prod(1 - c.change_probability for c in sample_mapping.components if c.kind == "package")
    assert db.kind == "volatile" and db.change_probability == pytest.approx(1 - keep)


def test_bytecode_goes_with_its_source(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    t.add(Pkg("python3.13", source="python3.13", files={"/usr/lib/python3.13/json/decoder.py": b"pass"}))
    t.write("/usr/lib/python3.13/json/__pycache__/decoder.cpython-313.pyc", b"compiled")
    t.write("/usr/lib/python3.13/json/__pycache__/decoder.cpython-313.opt-1.pyc", b"optimised")
    t.write("/usr/lib/python3.13/json/__pycache__/orphan.cpython-313.pyc", b"no source")
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/lib/python3.13/json/__pycache__/decoder.cpython-313.pyc") == "python3.13"
    assert owner(m, "usr/lib/python3.13/json/__pycache__/decoder.cpython-313.opt-1.pyc") == "python3.13"
    assert owner(m, "usr/lib/python3.13/json/__pycache__/orphan.cpython-313.pyc") == "unpackaged"


def test_generated_files_go_with_the_owner_of_their_inputs(tmp_path: Path) -> None:
    # A kernel split over two sources (as in Debian 14: the signed image and the
    # modules), both listing the modules directory; udev's directory listed by
    # several sources.  depmod's and systemd-hwdb's output goes with the source
    # owning most bytes of what they were made from, and is not a bigfile.
    t = _tree(tmp_path)
    moddir = f"/usr/lib/modules/{KVER}"
    t.add(
        Pkg(
            f"linux-image-{KVER}",
            source="linux-signed-amd64",
            files={f"/boot/vmlinuz-{KVER}": blob("vmlinuz", 300_000), f"{moddir}/modules.order": b"x"},
        )
    )
    t.add(
        Pkg(
            f"linux-modules-{KVER}",
            source="linux",
            files={f"{moddir}/kernel/fs/ext4.ko": blob("ext4", 900_000)},
        )
    )
    t.add(Pkg("udev", source="systemd", files={"/usr/lib/udev/hwdb.d/20-pci.hwdb": blob("pci", 500_000)}))
    t.add(
        Pkg(
            "libinput-bin",
            source="libinput",
            files={
                "/usr/lib/udev/hwdb.d/60-input.hwdb": blob("input", 20_000),
                "/usr/lib/udev/libinput-device-group": b"x",
                "/usr/lib/udev/libinput-fuzz": b"y",
            },
        )
    )
    t.write(f"{moddir}/modules.alias", blob("alias", 1_300_000))
    t.write(f"{moddir}/modules.dep", blob("dep", 20_000))
    t.write("/usr/lib/udev/hwdb.bin", blob("hwdb", 1_400_000))
    t.write("/usr/lib/udev/other.bin", blob("other", 1_100_000))
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, f"usr/lib/modules/{KVER}/modules.alias") == "linux"
    assert owner(m, f"usr/lib/modules/{KVER}/modules.dep") == "linux"
    assert owner(m, "usr/lib/udev/hwdb.bin") == "systemd"
    # Not a generator's output: the directory has several sources, so a bigfile.
    assert owner(m, "usr/lib/udev/other.bin") == "bigfile:usr/lib/udev/other.bin"
    assert m.component("systemd").size == 500_000 + 1_400_000


def test_bigfile_and_unpackaged(sample_mapping: Mapping) -> None:
    big = sample_mapping.component("bigfile:usr/lib/firmware/blob.bin")
    assert (big.kind, big.size, big.files) == ("bigfile", 1_500_000, 1)
    assert owner(sample_mapping, "usr/etc/hostname") == "unpackaged"
    assert sample_mapping.component("unpackaged").files == 1


def test_user_component_is_recursive_with_overrides(sample_mapping: Mapping) -> None:
    assert owner(sample_mapping, "opt/app/bin/app") == "app"
    assert owner(sample_mapping, "opt/app/plugins/extra.so") == "app-extra"
    # Symlinks cannot carry user.* xattrs: they take their directory's.
    assert owner(sample_mapping, "opt/app/current") == "app"
    app = sample_mapping.component("app")
    assert (app.kind, app.files, app.size) == ("component", 2, 600_000)


def test_directories_belong_to_no_component(sample_mapping: Mapping) -> None:
    assert sample_mapping.owner("usr/lib") is None


def test_every_file_has_exactly_one_owner(sample_mapping: Mapping) -> None:
    assert sample_mapping.tree is not None
    files = [e for e in sample_mapping.tree if e.type.value != "dir"]
    assert sum(c.files for c in sample_mapping.components) == len(files)


def test_commit_and_rootfs_give_the_same_components(sample_tree: Path, sample_repos: dict[str, Path]) -> None:
    by_commit = build_mapping(CommitOrigin(str(sample_repos["archive"]), "sample")).to_json()
    by_rootfs = build_mapping(RootfsOrigin(str(sample_tree))).to_json()
    assert by_commit["components"] == by_rootfs["components"]
    assert by_commit["admindir"] == by_rootfs["admindir"] == "usr/share/dpkg/database"


def test_change_probability_relative_to_newest_changelog(sample_mapping: Mapping) -> None:
    assert sample_mapping.reference_date == day(0)
    # glibc: changes on day 0, 30, 60 and 200 are within the year, day 400 is not.
    expected = 1 - math.exp(-7 * (4 + CHANGES_PRIOR) / 365)
    assert sample_mapping.component("glibc").change_probability == pytest.approx(expected)
    # coreutils' only change is 500 days old: the prior alone.
    assert sample_mapping.component("coreutils").change_probability == pytest.approx(
        1 - math.exp(-7 * CHANGES_PRIOR / 365)
    )
    # A native package's changelog is changelog.gz.
    assert sample_mapping.component("base-files").change_probability == pytest.approx(
        1 - math.exp(-7 * (3 + CHANGES_PRIOR) / 365)
    )
    assert sample_mapping.component("bigfile:usr/lib/firmware/blob.bin").change_probability == (
        DEFAULT_CHANGE_PROBABILITY
    )


def test_reference_date_pins_the_reference(sample_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = day(0) + dt.timedelta(days=100)
    m = build_mapping(RootfsOrigin(str(sample_tree)), reference_date=pinned)
    assert m.reference_date == pinned
    # The environment is the caller's to read (the CLI passes reference_date):
    # SOURCE_DATE_EPOCH alone changes nothing here.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(pinned.timestamp())))
    unpinned = build_mapping(RootfsOrigin(str(sample_tree)))
    assert unpinned.reference_date == day(0)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "not a number")
    assert build_mapping(RootfsOrigin(str(sample_tree))).components == unpinned.components
    # Window (day 0 + 100 - 365, day 0 + 100]: day 0, 30, 60, 200 -> day 200 is 265 days before
    # the reference, within it; day 400 is not.
    assert m.component("glibc").change_probability == pytest.approx(1 - math.exp(-7 * 4.5 / 365))
    # The systemd changes (day 5, 90) are both inside; kernel's 4 too.
    assert m.component("systemd").change_probability == pytest.approx(1 - math.exp(-7 * 2.5 / 365))


def _tree(tmp_path: Path, **kw: object) -> SampleTree:
    return SampleTree(tmp_path / "t", **kw)  # type: ignore[arg-type]


def test_diversion_puts_the_diverted_file_with_its_package(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    # dash ships /usr/bin/foo; bash diverts it to foo.distrib and ships its own /usr/bin/foo.
    t.add(Pkg("dash", files={"/usr/bin/foo": b"dash's foo"}))
    os.rename(t.where("/usr/bin/foo"), t.where("/usr/bin/foo.distrib"))
    t.add(Pkg("bash", files={"/usr/bin/foo": b"bash's foo"}))
    t.divert("/usr/bin/foo", "/usr/bin/foo.distrib", "bash")
    # A local diversion (":") applies to every package.
    t.add(Pkg("grep", files={"/usr/bin/grep": b"grep"}))
    os.rename(t.where("/usr/bin/grep"), t.where("/usr/bin/grep.orig"))
    t.divert("/usr/bin/grep", "/usr/bin/grep.orig", ":")
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/bin/foo.distrib") == "dash"
    assert owner(m, "usr/bin/foo") == "bash"
    assert owner(m, "usr/bin/grep.orig") == "grep"


def test_multi_arch_same_package_installed_twice(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    for arch, triplet in (("amd64", "x86_64-linux-gnu"), ("i386", "i386-linux-gnu")):
        t.add(
            Pkg(
                "libfoo1",
                "2.0-1",
                source="foo",
                arch=arch,
                multi_arch="same",
                files={
                    f"/usr/lib/{triplet}/libfoo.so.1": blob(arch, 1000),
                    "/usr/share/doc/libfoo1/copyright": b"same file in both",
                },
            )
        )
    m = build_mapping(RootfsOrigin(str(t.finish())))
    foo = m.component("foo")
    assert foo.packages == ("libfoo1:amd64", "libfoo1:i386")
    assert owner(m, "usr/lib/i386-linux-gnu/libfoo.so.1") == "foo"
    assert owner(m, "usr/lib/x86_64-linux-gnu/libfoo.so.1") == "foo"
    assert foo.files == 3


def test_identical_content_keeps_each_owner(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    same = blob("shared", 5000)
    t.add(Pkg("alpha", files={"/usr/share/alpha/data": same}))
    t.add(Pkg("beta", files={"/usr/share/beta/data": same}))
    t.write("/usr/share/gamma/data", same)
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/share/alpha/data") == "alpha"
    assert owner(m, "usr/share/beta/data") == "beta"
    assert owner(m, "usr/share/gamma/data") == "unpackaged"
    assert m.component("alpha").size == m.component("beta").size == 5000
    assert m.tree is not None
    beta = m.tree.get("usr/share/beta/data")
    assert beta is not None and beta.content_id is not None
    assert m.content_owners()[beta.content_id] == "alpha"


def test_only_installed_states_own_files(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    t.add(Pkg("kept", files={"/usr/bin/kept": b"1"}, status="install ok triggers-pending"))
    t.add(Pkg("awaiting", files={"/usr/bin/awaiting": b"2"}, status="install ok triggers-awaiting"))
    t.add(Pkg("gone", files={"/usr/bin/gone": b"3"}, status="deinstall ok config-files"))
    t.add(Pkg("half", files={"/usr/bin/half": b"4"}, status="install reinstreq half-installed"))
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/bin/kept") == "kept"
    assert owner(m, "usr/bin/awaiting") == "awaiting"
    assert owner(m, "usr/bin/gone") == "unpackaged"
    assert owner(m, "usr/bin/half") == "unpackaged"


def test_admindir_probe_order(tmp_path: Path) -> None:
    t = _tree(tmp_path, admindir="usr/lib/sysimage/dpkg")
    t.add(Pkg("right", files={"/usr/bin/x": b"x"}))
    t.finish()
    # A stale second database lower in the probe order is not read.
    stale = tmp_path / "t/usr/share/factory/var/lib/dpkg"
    (stale / "info").mkdir(parents=True)
    (stale / "status").write_text(
        "Package: wrong\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
    )
    (stale / "info/wrong.list").write_text("/usr/bin/x\n")
    m = build_mapping(RootfsOrigin(str(tmp_path / "t")))
    assert m.admindir == "usr/lib/sysimage/dpkg"
    assert owner(m, "usr/bin/x") == "right"


def test_admindir_through_symlink_and_plain_etc(tmp_path: Path) -> None:
    t = _tree(tmp_path, admindir="var/lib/dpkg", ostree_layout=False)
    t.add(Pkg("cfg", files={"/etc/cfg.conf": b"c"}))
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert m.admindir == "var/lib/dpkg"
    assert owner(m, "etc/cfg.conf") == "cfg"


def test_doc_dir_symlinked_to_a_sibling_gives_the_changelog(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    t.add(
        Pkg(
            "bar-common",
            source="bar",
            changelog=[day(0), day(10), day(20)],
            files={"/usr/share/bar/data": b"d"},
        )
    )
    t.add(
        Pkg("bar", source="bar", files={"/usr/bin/bar": b"b"}, symlinks={"/usr/share/doc/bar": "bar-common"})
    )
    t.add(Pkg("other", changelog=[day(0)], files={"/usr/bin/other": b"o"}))
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert m.component("bar").change_probability == pytest.approx(1 - math.exp(-7 * 3.5 / 365))


def test_reading_does_not_depend_on_input_order(tmp_path: Path, sample_tree: Path) -> None:
    a = map_tree(read_tree(RootfsOrigin(str(sample_tree))))
    b = map_tree(read_tree(RootfsOrigin(str(sample_tree)), threads=1))
    assert a.to_json() == b.to_json()
    assert list(a.owners) == list(b.owners)


def test_user_component_can_name_a_catch_all(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    t.add(Pkg("tool", files={"/usr/bin/tool": b"t"}, changelog=[day(0)]))
    state = t.write("/usr/lib/app/state.db", b"rewritten every build")
    os.setxattr(state, "user.component", b"volatile")
    mine = t.write("/usr/lib/app/mine.dat", b"mine")
    os.setxattr(mine, "user.component", b"tool")
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/lib/app/state.db") == "volatile"
    assert m.component("volatile").change_probability == 1.0
    # A component named like a source package holds both; the changelog still counts.
    tool = m.component("tool")
    assert owner(m, "usr/lib/app/mine.dat") == owner(m, "usr/bin/tool") == "tool"
    assert tool.packages == ("tool",) and tool.files == 3
    assert tool.change_probability == pytest.approx(1 - math.exp(-7 * 1.5 / 365))


def test_upstream_change_probability_ignores_debian_revisions(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    t.add(
        Pkg(
            "foo",
            "2.0-1",
            files={"/usr/bin/foo": b"f"},
            changelog=[day(0), day(30), day(60), day(400)],
            # An upstream release, a Debian revision, a security fix, then out of the window.
            changelog_versions=["1:2.0-1", "1:1.9-3", "1:1.9-2+deb13u1", "1:1.9-2"],
        )
    )
    m = build_mapping(RootfsOrigin(str(t.finish())))
    foo = m.component("foo")
    assert foo.change_probability == pytest.approx(1 - math.exp(-7 * 3.5 / 365))
    assert foo.upstream_change_probability == pytest.approx(1 - math.exp(-7 * 1.5 / 365))
    assert m.component("unpackaged").upstream_change_probability is None


@pytest.mark.parametrize(
    "os_release", [None, b'PRETTY_NAME="Debian GNU/Linux forky/sid"\n', b'VERSION_ID="13"\n']
)
def test_security_history_raises_change_rate_in_stable_releases(
    tmp_path: Path, os_release: bytes | None
) -> None:
    t = _tree(tmp_path)
    dates = [day(0), day(40), day(90)]
    for name in ("foo", "bar"):
        t.add(Pkg(name, "1.0-1", files={f"/usr/bin/{name}": name.encode()}, changelog=dates))
    root = t.finish()
    # foo's changelog names three CVEs (one twice); bar's none.
    path = root / "usr/share/doc/foo/changelog.Debian.gz"
    text = gzip.decompress(path.read_bytes()).replace(
        b"  * Change.", b"  * Fix CVE-2025-1234, CVE-2025-12345.\n  * Fix CVE-2026-0001 (CVE-2025-1234)", 1
    )
    path.write_bytes(gzip.compress(text, mtime=0))
    if os_release is not None:
        (root / "usr/lib/os-release").write_bytes(os_release)
    m = build_mapping(RootfsOrigin(str(root)))
    foo, bar = m.component("foo"), m.component("bar")
    base = 1 - math.exp(-7 * (3 + CHANGES_PRIOR) / 365)
    if os_release is not None and b"VERSION_ID" in os_release:
        # Stable: each rate is scaled by 1 + CVE_WEIGHT * ln(1 + CVEs), over
        # that factor's mean, so the two rates still add up as before.
        factors = {"foo": 1 + CVE_WEIGHT * math.log(4), "bar": 1.0}
        mean = sum(factors.values()) / 2
        for c in (foo, bar):
            assert c.change_probability == pytest.approx(1 - (1 - base) ** (factors[c.name] / mean))
        assert foo.change_probability > 3 * bar.change_probability
        rates = [-math.log(1 - c.change_probability) for c in (foo, bar)]
        assert sum(rates) == pytest.approx(-2 * math.log(1 - base))
    else:
        assert foo.change_probability == pytest.approx(base) == bar.change_probability


def test_user_update_interval_sets_a_component_change_rate(tmp_path: Path) -> None:
    """chunkah's user.update-interval: days between updates (or a name), on any
    file of the component or on the directory naming it; unset, the default."""
    t = _tree(tmp_path)
    root = t.finish()
    for rel, data in (
        ("opt/fonts/a.ttf", b"a"),
        ("opt/fonts/b.ttf", b"b"),
        ("opt/app/bin", b"c"),
        ("opt/x/y", b"d"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.setxattr(root / "opt/fonts", "user.component", b"fonts")
    os.setxattr(root / "opt/fonts", "user.update-interval", b"yearly")
    os.setxattr(root / "opt/app/bin", "user.component", b"app")
    os.setxattr(root / "opt/app/bin", "user.update-interval", b"14")
    os.setxattr(root / "opt/x/y", "user.component", b"plain")
    m = build_mapping(RootfsOrigin(str(root)))
    p = {c.name: c.change_probability for c in m.components}
    assert p["fonts"] == pytest.approx(1 - math.exp(-7 / 365))
    assert p["app"] == pytest.approx(1 - math.exp(-7 / 14))
    assert p["plain"] == DEFAULT_CHANGE_PROBABILITY
    os.setxattr(root / "opt/fonts/b.ttf", "user.update-interval", b"monthly")
    with pytest.raises(MappingError, match="conflicts with 365 days"):
        build_mapping(RootfsOrigin(str(root)))
    os.setxattr(root / "opt/fonts/b.ttf", "user.update-interval", b"often")
    with pytest.raises(MappingError, match="'often' is not a number of days"):
        build_mapping(RootfsOrigin(str(root)))


def test_a_default_copied_into_etc_goes_with_its_package(tmp_path: Path) -> None:
    """A maintainer script that installs a package's default into /etc
    (readline-common's postinst copies /usr/share/readline/inputrc to
    /etc/inputrc) leaves a file dpkg does not list: it goes with the package
    whose file it copies, when exactly one source ships that content."""
    default = b"# inputrc\n" + b"set bell-style none\n" * 8
    shared = b"# shipped by two packages\n" * 8
    t = _tree(tmp_path)
    t.add(Pkg("readline-common", source="readline", files={"/usr/share/readline/inputrc": default}))
    t.add(Pkg("one", files={"/usr/share/one/x": shared}))
    t.add(Pkg("two", files={"/usr/share/two/x": shared}))
    t.write("/etc/inputrc", default)
    t.write("/etc/both", shared)
    t.write("/opt/copy", default)
    m = build_mapping(RootfsOrigin(str(t.finish())))
    assert owner(m, "usr/etc/inputrc") == "readline"
    assert owner(m, "usr/etc/both") == "unpackaged"  # two sources ship that content
    assert owner(m, "opt/copy") == "unpackaged"  # only configuration under etc
