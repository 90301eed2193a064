"""Shared fixtures: generated sample trees, their commits, and a CLI runner."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sample import build_sample, commit


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
