"""mapping.libostree: libostree's bindings, or one line saying what to install."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mapping import DebchunkError, MissingLibostreeError
from tests.conftest import RunCli
from tests.sample import commit

# Blocks ``import gi`` in the child, as a venv without system site-packages has none.
WITHOUT_GI = "import sys; sys.modules['gi'] = None; "


def _fresh_import() -> types.ModuleType:
    sys.modules.pop("mapping.libostree", None)
    return importlib.import_module("mapping.libostree")


def test_the_bindings_load_where_python3_gi_is() -> None:
    libostree = _fresh_import()
    assert libostree.OSTree.Repo.__name__ == "Repo"
    assert libostree.GLib.Variant.__name__ == "Variant"


def test_no_gi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gi", None)  # import gi now raises ImportError
    monkeypatch.delitem(sys.modules, "mapping.libostree", raising=False)
    with pytest.raises(MissingLibostreeError) as caught:
        importlib.import_module("mapping.libostree")
    assert isinstance(caught.value, DebchunkError) and caught.value.where == "python3-gi"
    assert str(caught.value) == (
        "python3-gi: OSTree commits need libostree's Python bindings, and this Python has no 'gi' "
        "module; install python3-gi and gir1.2-ostree-1.0 with apt, and run debchunk with Debian's "
        "python3 or from a venv made with --system-site-packages (--rootfs, and --from with plain "
        "layers, need neither)"
    )
    assert "mapping.libostree" not in sys.modules


def test_gi_without_the_ostree_typelib(monkeypatch: pytest.MonkeyPatch) -> None:
    # python3-gi installed, gir1.2-ostree-1.0 not: gi refuses the namespace.
    fake = types.ModuleType("gi")

    def require_version(namespace: str, version: str) -> None:
        raise ValueError(f"Namespace {namespace} not available\n\x1b[31m")

    fake.require_version = require_version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gi", fake)
    monkeypatch.delitem(sys.modules, "mapping.libostree", raising=False)
    with pytest.raises(MissingLibostreeError) as caught:
        importlib.import_module("mapping.libostree")
    message = str(caught.value)
    assert message.startswith(
        "gir1.2-ostree-1.0: OSTree commits need libostree's introspection data (OSTree-1.0 typelib), "
        "which gi cannot load: Namespace OSTree not available\\n\\x1b[31m; install python3-gi and "
    ), message
    assert message.isprintable()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    commit(sample_tree, repo)
    return repo


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("container-encapsulate", ("--repo", "{repo}", "sample", "oci:{out}:x")),
        ("container-encapsulate", ("--rootfs", "{tree}", "--format", "ostree", "oci:{out}:x")),
        ("debchunk", ("map", "--repo", "{repo}", "sample")),
        ("debchunk", ("plan", "--repo", "{repo}", "sample", "--json")),
        ("debchunk", ("encapsulate", "--repo", "{repo}", "sample", "oci:{out}:x")),
    ],
)
def test_the_commit_paths_exit_1_with_one_line(
    run_cli: RunCli,
    repo: Path,
    sample_tree: Path,
    tmp_path: Path,
    program: str,
    args: tuple[str, ...],
) -> None:
    out = tmp_path / "out"
    argv = [a.format(repo=repo, out=out, tree=sample_tree) for a in args]
    entry = "debchunk_main" if program == "debchunk" else "container_encapsulate_main"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_GI + f"from encapsulate.cli.main import {entry}; sys.exit({entry}())",
            *argv,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
    )
    if "--rootfs" in argv:
        # A usage error comes first: --format ostree is for commits and images.
        assert proc.returncode == 2 and "--format ostree needs an OSTree commit" in proc.stderr
        return
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"{program}: error: python3-gi: OSTree commits need libostree's Python bindings")
    assert not out.exists()
    # With gi, the same command works.
    assert run_cli(*argv, program=program).returncode == 0
