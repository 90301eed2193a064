"""OCI layouts shared by several writers, and blobs damaged in place."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from encapsulate.oci.labels import REF_NAME_ANNOTATION as REF_NAME
from encapsulate.oci.layout import (
    MEDIA_CONFIG,
    MEDIA_MANIFEST,
    Layout,
    canonical_json,
    install_layout,
    layout_state,
    restore_layout,
)
from tests.conftest import RunCli, default_sigint, snapshot

EPOCH = "1767225600"
INTERRUPTED = "container-encapsulate: error: interrupted; nothing was written"
ENCAPSULATE = "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())"
# Files owned by different components, so the big content is spread over several layers.
BIG_FILES = (
    "usr/lib/firmware/big.bin",
    "usr/lib/modules/6.1.0-1-amd64/big.img",
    "opt/app/bin/big",
    "usr/lib/x86_64-linux-gnu/big.so",
)


def start(tree: Path, imgref: str) -> subprocess.Popen[str]:
    """``container-encapsulate --rootfs tree imgref`` in a child process."""
    return subprocess.Popen(
        [sys.executable, "-c", ENCAPSULATE, "--rootfs", str(tree), imgref, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        # Unset CI: its progress lines (every 5 s) would join the one error line.
        env={**os.environ, "CI": "", "SOURCE_DATE_EPOCH": EPOCH},
        preexec_fn=default_sigint,
    )


def committed_blobs(layout: Path) -> list[str]:
    """The blobs in place under their digest (not the temporary files)."""
    try:
        return [n for n in os.listdir(layout / "blobs/sha256") if not n.startswith(".")]
    except FileNotFoundError:
        return []


def tags(layout: Path) -> list[str]:
    """The tags in a layout's index.json, sorted."""
    index = json.loads((layout / "index.json").read_text())
    return sorted(m["annotations"][REF_NAME] for m in index["manifests"])


@pytest.fixture(scope="module")
def two_trees(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> tuple[Path, Path]:
    """The sample plus 4 x 16 MB of generated text (random, but compressible,
    so writing it takes the compressor a while), and a copy of that with one
    file changed: two trees that share all but one small layer."""
    base = tmp_path_factory.mktemp("shared")
    first = base / "first"
    subprocess.run(["cp", "-a", str(sample_tree), str(first)], check=True)
    for rel in BIG_FILES:
        (first / rel).parent.mkdir(parents=True, exist_ok=True)
        (first / rel).write_bytes(os.urandom(8 << 20).hex().encode())
    second = base / "second"
    subprocess.run(["cp", "-a", str(first), str(second)], check=True)
    (second / "usr/etc/hostname").write_bytes(b"second\n")
    return first, second


def test_an_interrupted_writer_keeps_the_blobs_another_writer_uses(
    run_cli: RunCli, two_trees: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two runs write different tags into one layout; the first is interrupted
    mid-write.  Blobs it added that the second found already there (same
    digest) must stay: the second's image is complete, ten times out of ten."""
    first, second = two_trees
    failures = []
    for attempt in range(10):
        layout = tmp_path / f"img{attempt}"
        # An existing layout: both runs write into it (a new one is written
        # beside and renamed into place whole).
        Layout(str(layout)).close()
        a = start(first, f"oci:{layout}:a")
        b = start(second, f"oci:{layout}:b")
        # Interrupt the first run once the blob directory starts to fill: both
        # runs are writing the large layers then.
        deadline = time.monotonic() + 30
        while len(committed_blobs(layout)) < 2 and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        a.send_signal(signal.SIGINT)
        _, a_err = a.communicate(timeout=60)
        b_out, b_err = b.communicate(timeout=60)
        # The interrupt landed mid-write, not before the run started or after it ended.
        assert a.returncode == 130, a_err
        assert a_err.strip().splitlines() == [
            "container-encapsulate: error: interrupted; nothing was written"
        ]
        assert b.returncode == 0, b_err
        assert tags(layout) == ["b"]
        assert not [p for p in layout.rglob("*") if p.name.startswith(".tmp")]
        validate = run_cli("validate", f"oci:{layout}:b")
        if validate.returncode != 0:
            failures.append(
                f"attempt {attempt + 1}: {validate.stdout.strip()[-300:]} {validate.stderr.strip()}"
            )
        else:
            # The image is the one written alone: every layer is there.
            written = json.loads(b_out)
            assert len(written["layers"]) >= len(BIG_FILES)
    assert failures == [], f"{len(failures)} of 10 images broken:\n" + "\n".join(failures)


def test_forget_created_spares_blobs_of_other_writers_and_tags(tmp_path: Path) -> None:
    """A failed writer removes what it added only when no other writer is at
    work in the layout, and never a blob a tag references."""
    path = str(tmp_path / "img")
    failed = Layout(path)
    shared = failed.add_bytes(b"a layer both runs write", MEDIA_CONFIG)
    other = Layout(path)
    # The other writer finds the same blob already there: it does not add it.
    assert other.add_bytes(b"a layer both runs write", MEDIA_CONFIG) == shared
    assert other.created == []
    failed.forget_created()
    assert (tmp_path / "img/blobs/sha256" / shared.digest[7:]).read_bytes() == b"a layer both runs write"

    # The other writer tags an image using the blob, and goes.
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": shared.to_json(), "layers": []}
    other.tag(other.add_bytes(canonical_json(manifest), MEDIA_MANIFEST), "kept")
    other.close()
    failed = Layout(path)
    assert failed.add_bytes(b"a layer both runs write", MEDIA_CONFIG) == shared
    only_mine = failed.add_bytes(b"a blob no one else has", MEDIA_CONFIG)
    failed.created.append(str(tmp_path / "img/blobs/sha256" / shared.digest[7:]))
    failed.forget_created()
    # Alone now: its own blob goes, the one a tag references stays.
    assert not (tmp_path / "img/blobs/sha256" / only_mine.digest[7:]).exists()
    assert (tmp_path / "img/blobs/sha256" / shared.digest[7:]).exists()
    assert tags(tmp_path / "img") == ["kept"]
    failed.close()


def test_concurrent_tags_are_all_kept(tmp_path: Path) -> None:
    """Writers tagging at the same time do not lose each other's tags."""
    path = str(tmp_path / "img")
    Layout(path).close()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with Layout(path) as layout:
                for k in range(25):
                    config = layout.add_bytes(canonical_json({"n": n, "k": k}), MEDIA_CONFIG)
                    body = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json()}
                    layout.tag(layout.add_bytes(canonical_json(body), MEDIA_MANIFEST), f"w{n}-{k}")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tags(tmp_path / "img") == sorted(f"w{n}-{k}" for n in range(6) for k in range(25))
    assert not [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".tmp")]


def largest_layer(layout: Path, tag: str) -> dict[str, Any]:
    """The descriptor of the largest layer of image ``tag``."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"][REF_NAME] == tag]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    layer: dict[str, Any] = max(manifest["layers"], key=lambda d: d["size"])
    return layer


def test_a_blob_damaged_in_place_is_not_reused(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    """One flipped byte (same size) in a layer blob: the rebuild writes that
    layer again, repairs the blob, and does not count it as reused."""
    layout = tmp_path / "img"
    first = run_cli(
        "--rootfs", str(sample_tree), f"oci:{layout}:1", "--json", program="container-encapsulate"
    )
    assert first.returncode == 0, first.stderr
    count = len(json.loads(first.stdout)["layers"])
    damaged = largest_layer(layout, "1")
    path = layout / "blobs/sha256" / damaged["digest"][7:]
    good = path.read_bytes()

    def flip() -> None:
        flipped = bytearray(good)
        flipped[len(flipped) // 2] ^= 0x01
        path.write_bytes(flipped)
        assert path.stat().st_size == damaged["size"]

    flip()
    text = run_cli("--rootfs", str(sample_tree), f"oci:{layout}:2", program="container-encapsulate")
    assert text.returncode == 0, text.stderr
    assert f"({count - 1} already in the layout)" in text.stdout, text.stdout
    assert path.read_bytes() == good

    flip()
    second = run_cli(
        "--rootfs", str(sample_tree), f"oci:{layout}:3", "--json", program="container-encapsulate"
    )
    assert second.returncode == 0, second.stderr
    layers = json.loads(second.stdout)["layers"]
    assert [layer["digest"] for layer in layers if not layer["reused"]] == [damaged["digest"]]
    assert path.read_bytes() == good
    assert hashlib.sha256(path.read_bytes()).hexdigest() == damaged["digest"][7:]
    for tag in ("2", "3"):
        validate = run_cli("validate", f"oci:{layout}:{tag}")
        assert validate.returncode == 0, validate.stdout + validate.stderr


def test_has_blob_checks_size_and_digest(tmp_path: Path) -> None:
    """``has_blob`` hashes the bytes; ``add_bytes`` repairs a damaged blob of the same digest."""
    layout = Layout(str(tmp_path / "img"))
    descriptor = layout.add_bytes(b"0123456789" * 1000, MEDIA_CONFIG)
    path = tmp_path / "img/blobs/sha256" / descriptor.digest[7:]
    path.write_bytes(b"0123456789" * 999 + b"012345678X")
    fresh = Layout(str(tmp_path / "img"))
    assert not fresh.has_blob(descriptor)
    assert fresh.add_bytes(b"0123456789" * 1000, MEDIA_CONFIG) == descriptor
    assert path.read_bytes() == b"0123456789" * 1000
    assert fresh.has_blob(descriptor)
    # A descriptor with the wrong size does not match the blob either.
    assert not Layout(str(tmp_path / "img")).has_blob(replace(descriptor, size=5))
    layout.close()
    fresh.close()


def _one_image(path: str, tag: str, body: bytes) -> str:
    """A layout at ``path`` holding one small image tagged ``tag``; its manifest digest."""
    with Layout(path) as layout:
        config = layout.add_bytes(body, MEDIA_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json(), "layers": []}
        descriptor = layout.add_bytes(canonical_json(manifest), MEDIA_MANIFEST)
        layout.tag(descriptor, tag, {"architecture": "arm64", "os": "linux"})
    return str(descriptor.digest)


def test_a_new_layout_is_renamed_into_place_or_merged_into_one_made_meanwhile(tmp_path: Path) -> None:
    built = _one_image(str(tmp_path / "built"), "new", b'{"n":1}')
    install_layout(str(tmp_path / "built"), str(tmp_path / "img"), "new")
    assert not (tmp_path / "built").exists() and tags(tmp_path / "img") == ["new"]
    # Another run made a layout there meanwhile: the image is copied in and tagged, its platform kept.
    other = _one_image(str(tmp_path / "other"), "other", b'{"n":2}')
    install_layout(str(tmp_path / "other"), str(tmp_path / "img"), "other")
    assert tags(tmp_path / "img") == ["new", "other"]
    index = json.loads((tmp_path / "img/index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [built, other]
    assert index["manifests"][1]["platform"] == {"architecture": "arm64", "os": "linux"}
    assert (tmp_path / "other").exists()  # the caller's temporary layout, removed by the caller


def test_restore_layout_puts_the_tag_and_blobs_back(tmp_path: Path) -> None:
    """After a failure once the tag moved: the tag points where it did, the
    blobs the run added go, a tag another run added meanwhile stays; alone,
    index.json is put back byte for byte (and its mtime)."""
    path = str(tmp_path / "img")
    _one_image(path, "kept", b'{"n":1}')
    moved = _one_image(path, "moved", b'{"n":2}')
    before = snapshot(tmp_path / "img", dir_mtimes=False)
    state = layout_state(path, "moved")
    assert state is not None
    failed = _one_image(path, "moved", b'{"n":3}')
    _one_image(path, "added", b'{"n":4}')
    restore_layout(path, "moved", state)
    assert tags(tmp_path / "img") == ["added", "kept", "moved"]
    index = json.loads((tmp_path / "img/index.json").read_text())
    assert [m["digest"] for m in index["manifests"] if m["annotations"][REF_NAME] == "moved"] == [moved]
    assert not (tmp_path / "img/blobs/sha256" / failed[7:]).exists()
    # The other run's tag, taken back too: the layout is as it was.
    restore_layout(path, "added", state._replace(entry=None))
    assert snapshot(tmp_path / "img", dir_mtimes=False) == before
