"""mapping.space: temporary space kept in bounds.  A gzip bomb (a small layer
of one file of zeros that inflates to hundreds of megabytes) stops at the
run's budget or before its file system is down to the reserve, with one
line naming the place and the option, and leaves no spool behind; the
destination is untouched."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from encapsulate.oci.layout import MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, Layout, canonical_json
from encapsulate.oci.model import Descriptor, Digest
from mapping import LayerArchive, MappingError
from mapping.layers import LayersTree
from mapping.space import MiB, SpaceAccount, SpaceLimits, account_for, accounted, parse_size, show_size
from tests.conftest import RunCli, snapshot
from tests.images import EPOCH

_ZEROS = bytes(MiB)


def gzip_bomb(path: Path, mib: int) -> tuple[str, str]:
    """A gzip'd tar at ``path`` holding one file of ``mib`` MiB of zeros;
    its digest and its diff_id (the sha256 of the tar)."""
    info = tarfile.TarInfo("zeros")
    info.size = mib * MiB
    header = info.tobuf(tarfile.PAX_FORMAT)
    end = bytes(2 * tarfile.BLOCKSIZE)
    end += bytes(-(len(header) + info.size + len(end)) % tarfile.RECORDSIZE)
    diff = hashlib.sha256()
    gz = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(path, "wb") as f:
        for piece in (header, *([_ZEROS] * mib), end):
            diff.update(piece)
            f.write(gz.compress(piece))
        f.write(gz.flush())
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}", f"sha256:{diff.hexdigest()}"


def bomb_image(layout: Path, mib: int) -> str:
    """An OCI layout tagged ``bomb`` whose one layer is a ``gzip_bomb``; its IMGREF."""
    with Layout(str(layout)) as out:
        blob = layout / "bomb.tar.gz"
        digest, diff_id = gzip_bomb(blob, mib)
        size = blob.stat().st_size
        blob.rename(out.blob_path(digest))
        config = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        }
        config_d = out.add_bytes(canonical_json(config), MEDIA_CONFIG)
        layer = Descriptor(MEDIA_LAYER_GZIP, Digest(digest), size)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_d.to_json(),
            "layers": [layer.to_json()],
        }
        out.tag(out.add_bytes(canonical_json(manifest), MEDIA_MANIFEST), "bomb")
    return f"oci:{layout}:bomb"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 200 MiB gzip bomb image (about 200 KB on disk)."""
    return bomb_image(tmp_path_factory.mktemp("bomb") / "img", 200)


@contextlib.contextmanager
def tmpfs(where: Path, mib: int) -> Iterator[Path]:
    """A ``mib`` MiB tmpfs mounted at ``where``."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_sizes() -> None:
    assert parse_size("123") == 123
    assert parse_size("50M") == parse_size("50MiB") == parse_size("50mb") == 50 * MiB
    assert parse_size(" 2G ") == 2 << 30
    for bad in ("", "1.5G", "-1", "12 parsecs", "G"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    assert show_size(512) == "512 bytes"
    assert show_size(50 * MiB) == "50 MiB"
    assert show_size(3 * MiB // 2) == "1.5 MiB"


def test_a_registered_directory_is_charged_to_its_account(tmp_path: Path) -> None:
    account = SpaceAccount(SpaceLimits(budget=10), str(tmp_path))
    with accounted(str(tmp_path / "work"), account):
        assert account_for(str(tmp_path / "work/layers/x")) is account
        assert account_for(str(tmp_path / "workshop/x")) is not account
    assert account_for(str(tmp_path / "work/layers/x")) is not account


def _spool_bomb(tmp_path: Path, work: Path, limits: SpaceLimits) -> MappingError:
    digest, diff_id = gzip_bomb(tmp_path / "bomb.tar.gz", 200)
    layer = LayerArchive(str(tmp_path / "bomb.tar.gz"), digest, "gzip", diff_id)
    with accounted(str(work), SpaceAccount(limits, str(work))), pytest.raises(MappingError) as raised:
        LayersTree("bomb", [layer], str(work / "layers"))
    return raised.value


def test_a_gzip_bomb_stops_at_the_budget(tmp_path: Path) -> None:
    work = tmp_path / "work"
    error = _spool_bomb(tmp_path, work, SpaceLimits(budget=50 * MiB, budget_hint="allow more"))
    assert error.where == str(work) and error.hint == "allow more"
    assert "budget of 50 MiB" in error.what and "spooling layer sha256:" in error.what
    # The spool is gone; it never held more than the budget.
    assert list((work / "layers").iterdir()) == []


def test_a_gzip_bomb_stops_before_the_reserve(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 96) as small:
        error = _spool_bomb(tmp_path, small, SpaceLimits(reserve=64 * MiB, hint="go elsewhere"))
        assert error.where == str(small) and error.hint == "go elsewhere"
        assert "being kept free" in error.what, error.what
        assert list((small / "layers").iterdir()) == []


def test_the_default_reserve_refuses_a_small_file_system_before_writing(tmp_path: Path) -> None:
    """Unregistered, a spool keeps the default reserve (at least 1 GiB)."""
    with tmpfs(tmp_path / "small", 64) as small:
        digest, diff_id = gzip_bomb(tmp_path / "bomb.tar.gz", 1)
        layer = LayerArchive(str(tmp_path / "bomb.tar.gz"), digest, "gzip", diff_id)
        with pytest.raises(MappingError, match="1 GiB being kept free"):
            LayersTree("bomb", [layer], str(small / "layers"))
        assert list((small / "layers").iterdir()) == []


def _one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("container-encapsulate: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _existing(tmp_path: Path) -> Path:
    """An existing destination layout, with one image of its own."""
    dest = tmp_path / "dest"
    bomb_image(dest, 1)
    return dest


def test_cli_a_gzip_bomb_stops_at_tmp_budget(run_cli: RunCli, bomb: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dest = _existing(tmp_path)
    before = snapshot(dest)
    for destination in (f"oci:{dest}:new", f"oci:{tmp_path}/fresh:new", f"oci-archive:{tmp_path}/a.tar"):
        proc = run_cli(
            "--from", bomb, "--tmpdir", str(tmp), "--tmp-budget", "50M", destination,
            program="container-encapsulate",
            env={"SOURCE_DATE_EPOCH": str(EPOCH)},
        )  # fmt: skip
        _one_line(proc, f"{tmp}: ", "budget of 50 MiB", "--tmp-budget")
        assert list(tmp.iterdir()) == []
    assert snapshot(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "tmp"]


def test_cli_a_gzip_bomb_stops_before_tmp_reserve(run_cli: RunCli, bomb: str, tmp_path: Path) -> None:
    dest = _existing(tmp_path)
    before = snapshot(dest)
    with tmpfs(tmp_path / "small", 96) as small:
        proc = run_cli(
            "--from", bomb, "--tmp-reserve", "64M", f"oci:{dest}:new",
            program="container-encapsulate",
            env={"SOURCE_DATE_EPOCH": str(EPOCH), "TMPDIR": str(small)},
        )  # fmt: skip
        _one_line(proc, f"{small}: ", "64 MiB being kept free", "--tmpdir DIR (or TMPDIR)")
        assert list(small.iterdir()) == []
        # Without --tmp-reserve, the default (1 GiB at least) is kept: refused at once.
        proc = run_cli(
            "--from", bomb, "--tmpdir", str(small), f"oci:{dest}:new",
            program="container-encapsulate",
            env={"SOURCE_DATE_EPOCH": str(EPOCH)},
        )  # fmt: skip
        _one_line(proc, f"{small}: ", "1 GiB being kept free", "--tmpdir")
        assert list(small.iterdir()) == []
    assert snapshot(dest) == before


def test_cli_tmpdir_must_be_a_directory(run_cli: RunCli, bomb: str, tmp_path: Path) -> None:
    proc = run_cli(
        "--from", bomb, "--tmpdir", str(tmp_path / "nope"), f"oci:{tmp_path}/out",
        program="container-encapsulate",
    )  # fmt: skip
    assert proc.returncode == 2 and "--tmpdir" in proc.stderr.strip().splitlines()[-1], proc.stderr
    proc = run_cli(
        "--from", bomb, "--tmp-budget", "lots", f"oci:{tmp_path}/out", program="container-encapsulate"
    )
    assert proc.returncode == 2 and "not a size" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
