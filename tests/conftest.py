"""Shared fixtures: generated sample trees, their commits, and a CLI runner;
and a check, after every test, that each image it wrote is one that
``debchunk validate`` accepts (its documents; see ``written_image_problems``)."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from encapsulate.oci.labels import PLAN_LABEL
from encapsulate.tools.validate import validate_documents
from tests.sample import build_sample, commit

# Marks a test that writes images ``validate`` rejects on purpose (damaged
# copies, hand-made images with faults): they are not checked after it.
INVALID_IMAGES = "invalid_images"
# Directories never searched for images: blob stores and ostree object
# stores are large and hold none.
_NOT_SEARCHED = frozenset(("blobs", "objects", "proc", "sys"))
# What an OCI archive written by a test is named.
_ARCHIVE_SUFFIXES = (".tar", ".ociarchive", ".oci-archive")
# Blobs of an archive larger than this are layers, not documents.
_DOCUMENT_LIMIT = 4 << 20
# What the config of an image debchunk wrote holds.
PLAN_MARK = f'"{PLAN_LABEL}"'.encode()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{INVALID_IMAGES}: writes images 'debchunk validate' rejects on purpose; they are not checked",
    )


def _archive_documents(archive: Path, into: Path) -> bool:
    """The documents of an uncompressed OCI archive (``oci-layout``,
    ``index.json`` and every small JSON blob) copied into the layout
    directory ``into``; False when ``archive`` is not one."""
    try:
        with tarfile.open(archive, "r:") as tar:
            members = {os.path.normpath(m.name): m for m in tar if m.isfile()}
            if "oci-layout" not in members or "index.json" not in members:
                return False
            for name, member in members.items():
                if name.startswith("blobs/") and member.size > _DOCUMENT_LIMIT:
                    continue
                source = tar.extractfile(member)
                assert source is not None
                data = source.read()
                if name.startswith("blobs/") and not data.startswith(b"{"):
                    continue
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                (into / name).write_bytes(data)
    except (OSError, tarfile.TarError, EOFError):
        return False
    return True


def _written_by_debchunk(layout: str) -> bool:
    """Whether a layout holds an image debchunk wrote: a config with its plan
    label (images made by hand or by other tools are not debchunk's to answer for)."""
    blobs = Path(layout, "blobs", "sha256")
    for blob in blobs.iterdir() if blobs.is_dir() else ():
        if blob.is_file() and blob.stat().st_size <= _DOCUMENT_LIMIT:
            with open(blob, "rb") as f:
                if f.read(1) == b"{" and PLAN_MARK in f.read():
                    return True
    return False


def _layout_problems(layout: str, name: str) -> list[str]:
    if not _written_by_debchunk(layout):
        return []
    return [f"{name}: {p}" for p in validate_documents(layout).problems]


def written_image_problems(root: Path) -> list[str]:
    """Every problem ``validate`` finds in the documents of the OCI layouts
    and uncompressed OCI archives under ``root`` that debchunk wrote (layers
    are not read)."""
    problems = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _NOT_SEARCHED]
        if "oci-layout" in filenames and "index.json" in filenames:
            problems += _layout_problems(dirpath, dirpath)
        for name in filenames:
            if not name.endswith(_ARCHIVE_SUFFIXES) or os.path.islink(os.path.join(dirpath, name)):
                continue
            with tempfile.TemporaryDirectory(prefix="documents-") as tmp:
                if _archive_documents(Path(dirpath, name), Path(tmp)):
                    problems += _layout_problems(tmp, f"{dirpath}/{name}")
    return problems


# The temporary directories of tests already checked (or left alone).
_SEEN: set[Path] = set()


@pytest.fixture(autouse=True)
def _written_images_are_valid(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, the images it wrote in its ``tmp_path`` pass ``validate``."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    root: Path = request.getfixturevalue("tmp_path")
    _SEEN.add(root)
    yield
    if request.node.get_closest_marker(INVALID_IMAGES) is None:
        problems = written_image_problems(root)
        assert not problems, "an image written fails debchunk validate:\n" + "\n".join(problems[:10])


@pytest.fixture(autouse=True, scope="session")
def _shared_images_are_valid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end, the images written by the shared (module and session)
    fixtures pass ``validate`` too."""
    yield
    base = tmp_path_factory.getbasetemp()
    problems = []
    for root in sorted(base.iterdir()):
        if root not in _SEEN and root.is_dir() and not root.is_symlink():
            problems += written_image_problems(root)
    assert not problems, "an image written fails debchunk validate:\n" + "\n".join(problems[:10])


@pytest.fixture(autouse=True)
def _default_logging() -> None:
    """A command run in this process (here or in a fixture) sets up the
    "debchunk" logger for a terminal; each test starts from the default again,
    so its records reach pytest's capture."""
    logger = logging.getLogger("debchunk")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def snapshot(root: Path, dir_mtimes: bool = True) -> dict[str, tuple[int, int, int, str]]:
    """Everything about a directory tree that a reader could damage: each path's
    mode, size, mtime and content hash (symlinks by target).  Without
    ``dir_mtimes``, a directory's mtime (changed by adding and removing a
    temporary file in it) is left out."""
    state: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                digest = os.readlink(path)
            elif os.path.isfile(path):
                try:
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
            else:
                digest = ""
            mtime = (
                0 if os.path.isdir(path) and not os.path.islink(path) and not dir_mtimes else st.st_mtime_ns
            )
            state[os.path.relpath(path, root)] = (st.st_mode, st.st_size, mtime, digest)
    return state


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample tree (read-only: copy it before changing it)."""
    return build_sample(tmp_path_factory.mktemp("sample") / "tree")


@pytest.fixture(scope="session")
def sample_repos(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> dict[str, Path]:
    """The sample committed as ``sample`` into a repo of each mode."""
    repos = {}
    for mode in ("bare-user", "bare", "archive"):
        repo = tmp_path_factory.mktemp(f"repo-{mode}")
        commit(sample_tree, repo, "sample", mode)
        repos[mode] = repo
    return repos


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Run ``debchunk`` in a child process; returns the completed process."""

    def run(
        *args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None, program: str = "debchunk"
    ) -> subprocess.CompletedProcess[str]:
        entry = "debchunk_main" if program == "debchunk" else "container_encapsulate_main"
        code = f"import sys; from encapsulate.cli.main import {entry}; sys.exit({entry}())"
        return subprocess.run(
            [*prefix, sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
        )

    return run


def debchunk_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``debchunk ARGS`` in a child process; its exit status and the exact
    bytes of its stdout and stderr."""
    code = "import sys; from encapsulate.cli.main import debchunk_main; sys.exit(debchunk_main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
    )


def printable_lines(data: bytes) -> list[str]:
    """Output for a terminal, checked: UTF-8, no escape sequence, no control
    byte but the newline ending each line, every line printable; its lines."""
    assert b"\x1b" not in data and b"\r" not in data, data
    assert all(b >= 0x20 or b == 0x0A for b in data), data
    assert not data or data.endswith(b"\n"), data
    lines = data.decode("utf-8").split("\n")[:-1]
    assert all(line.isprintable() for line in lines), lines
    return lines


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry on 127.0.0.1, on a free port; yields HOST:PORT."""
    from benches.registry import docker_registry

    with docker_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


def default_sigint() -> None:
    """For ``Popen(preexec_fn=...)`` of a child a test interrupts: SIGINT back
    to its default.  A shell without job control starts background commands
    with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so the
    child would not see the interrupt a terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
