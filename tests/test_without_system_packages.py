"""The reading tools work in a Python without Debian's python3-gi and python3-apt.

A venv made without system site-packages has neither ``gi`` nor ``apt_pkg``;
it gets the project's PyPI dependencies (numpy, zlib-ng, zstandard,
python-debian, jsonschema) by a ``.pth`` line naming the project venv's own
site-packages, and the checkout by PYTHONPATH.  In it, ``debchunk map
--rootfs``, ``inspect``, ``diff``, ``validate`` and ``report`` must run on a
sample tree and on images this process wrote with the normal CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.report_demo import sample_images

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A venv without system site-packages: its python and the environment to run it in."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin/python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The project venv's site-packages (this interpreter's), as a plain path:
    # a .pth line adds the directory without running the .pth files in it, so
    # the editable install there does not point imports at another checkout.
    project_site = sysconfig.get_paths()["purelib"]
    assert "/usr/lib/python3/dist-packages" not in project_site
    Path(own, "project-deps.pth").write_text(project_site + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(CHECKOUT)
    return str(python), env


def run(
    bare: tuple[str, dict[str, str]], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the bare venv."""
    python, env = bare
    return subprocess.run(
        [python, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def debchunk(bare: tuple[str, dict[str, str]], *args: str, cwd: Path | None = None) -> str:
    """``debchunk ARGS`` (as ``python -m encapsulate.cli``) in the bare venv; its stdout."""
    proc = run(bare, "-m", "encapsulate.cli", *args, cwd=cwd)
    assert proc.returncode == 0, f"debchunk {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The sample encapsulated twice by this process (bash upgraded between):
    (its tree, the first image, the second)."""
    work = tmp_path_factory.mktemp("images")
    first, second = sample_images(work)
    return work / "tree", first, second


def test_the_bare_venv_lacks_the_debian_modules(bare_python: tuple[str, dict[str, str]]) -> None:
    # Otherwise the tests below prove nothing.
    for module in ("gi", "apt_pkg", "apt"):
        proc = run(bare_python, "-c", f"import {module}")
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module
    proc = run(
        bare_python,
        "-c",
        "import sys, numpy, zlib_ng, zstandard, debian, jsonschema, encapsulate;"
        "print(encapsulate.__file__);"
        "print(sys.flags.no_site, [p for p in sys.path if 'dist-packages' in p])",
    )
    assert proc.returncode == 0, proc.stderr
    where, site = proc.stdout.splitlines()
    assert Path(where).is_relative_to(CHECKOUT)
    assert site == "0 []"


def test_map_rootfs(bare_python: tuple[str, dict[str, str]], images: tuple[Path, str, str]) -> None:
    tree, _, _ = images
    mapping = json.loads(debchunk(bare_python, "map", "--rootfs", str(tree), "--json"))
    names = {c["name"] for c in mapping["components"]}
    assert {"glibc", "systemd", "bash", "coreutils", "linux-signed-amd64", "app", "app-extra"} <= names
    (bash,) = [c for c in mapping["components"] if c["name"] == "bash"]
    assert bash["version"] == "5.2.37-3" and bash["kind"] == "package"


def test_inspect(bare_python: tuple[str, dict[str, str]], images: tuple[Path, str, str]) -> None:
    _, _, second = images
    report = json.loads(debchunk(bare_python, "inspect", second, "--json"))
    assert len(report["layers"]) == 8
    assert report["files"] > 50 and report["size"] > 15_000_000
    text = debchunk(bare_python, "inspect", second)
    assert "8 layers" in text and "bash" in text


def test_diff(bare_python: tuple[str, dict[str, str]], images: tuple[Path, str, str]) -> None:
    _, first, second = images
    diff = json.loads(debchunk(bare_python, "diff", first, second, "--json"))
    assert (diff["new_layers"], diff["reused_layers"]) == (2, 6)
    assert 0 < diff["ideal_bytes"] < diff["download_bytes"] < diff["total_bytes"]
    changed = {c["name"]: (c["old_version"], c["new_version"]) for c in diff["components"]["changed"]}
    assert changed["bash"] == ("5.2.37-2", "5.2.37-3")


def test_validate(bare_python: tuple[str, dict[str, str]], images: tuple[Path, str, str]) -> None:
    _, first, second = images
    for image in (first, second):
        out = debchunk(bare_python, "validate", image)
        assert "valid: " in out and "8 layers" in out, out


def test_report(
    bare_python: tuple[str, dict[str, str]], images: tuple[Path, str, str], tmp_path: Path
) -> None:
    _, first, second = images
    page = tmp_path / "report.html"
    out = debchunk(bare_python, "report", second, "--prior", first, "-o", str(page))
    assert str(page) in out
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    assert "5.2.37-3" in html and "linux-signed-amd64" in html
