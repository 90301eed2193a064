"""The wheel, installed with pip into a venv without Debian's Python packages.

``pip wheel`` builds debchunk's wheel from a copy of the sources; a venv made
by ``/usr/bin/python3 -m venv`` (no system site-packages: no ``gi``, no
``apt_pkg``) installs it with its own pip, its dependencies coming from PyPI
at the versions pyproject.toml pins.  In that venv ``container-encapsulate
--rootfs``, ``--from`` (rechunk), ``debchunk inspect``, ``diff``, ``validate``
and ``report`` run on the sample, and write the same images, byte for byte,
as this checkout run by the development venv; the commit paths stop with one
line naming python3-gi.

The dependencies' wheels are downloaded once into a wheelhouse under the
debchunk cache directory (``$DEBCHUNK_CACHE`` or ``~/.cache/debchunk``), keyed
by the wheel's ``Requires-Dist`` lines and the Python: later runs make a
fresh venv and install offline from it.
"""

from __future__ import annotations

import contextlib
import email.parser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benches.debtrees import cache_dir
from tests.report_demo import update_bash
from tests.sample import build_sample, commit

CHECKOUT = Path(__file__).resolve().parent.parent
# The dependencies whose version decides an image's bytes: the compressors, and
# numpy, whose sums the plans are made of (pinned exactly in pyproject.toml).
BYTES_DECIDING = {"numpy", "zlib-ng", "zstandard"}


def _constraints() -> dict[str, str]:
    """constraints.txt: name -> the exact version make installs."""
    pins: dict[str, str] = {}
    for line in (CHECKOUT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, line
            pins[canonicalize_name(name)] = version
    return pins


PACKAGES = ("mapping", "chunker", "encapsulate")
# The same timestamp for every build here, so images can be compared by digest.
EPOCH = "1767225600"


def _copy_sources(into: Path) -> None:
    """What the wheel is built from: pyproject.toml, the README (the long
    description) and the import packages; nothing else of the checkout (its
    ``build/`` may hold modules since removed)."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, into / name)
    for package in PACKAGES:
        shutil.copytree(CHECKOUT / package, into / package, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """debchunk's wheel, built by pip from a copy of this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    _copy_sources(work / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(work / "dist"),
            str(work / "src"),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = (work / "dist").glob("debchunk-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.BytesParser().parsebytes(z.read(name))


def _wheelhouse(requires: list[str]) -> Path:
    """The dependencies' wheels (binary wheels only, with what they need in
    turn), downloaded from PyPI once per set of requirements and Python."""
    constraints = sorted(_constraints().items())
    key_text = json.dumps([list(sys.version_info[:2]), os.uname().machine, sorted(requires), constraints])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    root = cache_dir().parent / "wheelhouse"
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--only-binary",
                ":all:",
                "-d",
                str(scratch),
                "-c",
                str(CHECKOUT / "constraints.txt"),
                *requires,
            ],
            check=True,
            capture_output=True,
        )
        (scratch / "requirements.json").write_text(key_text + "\n")
        # Whole or not at all; another run may have got there first.
        with contextlib.suppress(OSError):
            scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv without system site-packages with the wheel installed by its own pip."""
    requires = _metadata(wheel).get_all("Requires-Dist") or []
    # Extras (the test tools) are not installed.
    runtime = [r for r in requires if "extra ==" not in r]
    wheelhouse = _wheelhouse(runtime)
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "-c",
            str(CHECKOUT / "constraints.txt"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["SOURCE_DATE_EPOCH"] = EPOCH
    return env


def installed(venv: Path, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``PROGRAM ARGS``: the venv's console script, run by the venv's python
    from outside the checkout."""
    return subprocess.run(
        [str(venv / "bin/python"), str(venv / "bin" / program), *args],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=venv,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def development(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``PROGRAM ARGS`` with this checkout's code in the development venv."""
    entry = "debchunk_main" if program == "debchunk" else "container_encapsulate_main"
    code = f"import sys; from encapsulate.cli.main import {entry}; sys.exit({entry}())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=CHECKOUT,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    (digest,) = [
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return str(digest)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample, and the sample with bash upgraded."""
    work = tmp_path_factory.mktemp("trees")
    old, new = build_sample(work / "old"), build_sample(work / "new")
    update_bash(new)
    return old, new


def _build_all(run: object, layout: Path, trees: tuple[Path, Path]) -> None:
    """The sample as ``:a`` (``--rootfs``), ``:a`` rechunked as ``:b``
    (``--from``), the upgraded sample as ``:c`` with ``:a`` as its prior."""
    assert callable(run)
    old, new = trees
    a, b, c = (f"oci:{layout}:{tag}" for tag in "abc")
    ok(run("container-encapsulate", "--rootfs", str(old), "--max-layers", "8", a))
    ok(run("container-encapsulate", "--from", a, "--max-layers", "8", b))
    ok(run("container-encapsulate", "--rootfs", str(new), "--max-layers", "8", "--prior", a, c))


@pytest.fixture(scope="module")
def images(
    tmp_path_factory: pytest.TempPathFactory, venv: Path, trees: tuple[Path, Path]
) -> tuple[Path, Path]:
    """The three images written by the installed wheel and by the checkout:
    (the wheel's layout, the checkout's)."""
    work = tmp_path_factory.mktemp("images")
    _build_all(lambda *a: installed(venv, *a), work / "wheel", trees)
    _build_all(development, work / "checkout", trees)
    return work / "wheel", work / "checkout"


def test_the_wheel_holds_the_packages_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        everything = b"".join(z.read(n) for n in names)
    sources = {
        str(p.relative_to(CHECKOUT))
        for package in PACKAGES
        for p in (CHECKOUT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert names - dist_info == sources
    assert {"encapsulate/schemas/manifest.json", "encapsulate/py.typed", "mapping/py.typed"} <= names
    assert not any(n.startswith(("tests/", "benches/")) for n in names)
    # Nothing of the machine that built it: no path of the sources, the build or its Python.
    for local in (str(CHECKOUT), str(wheel.parent.parent), sys.prefix):
        assert local.encode() not in everything, local
    assert "debchunk = encapsulate.cli.main:debchunk_main" in entry_points
    assert "container-encapsulate = encapsulate.cli.main:container_encapsulate_main" in entry_points
    # Compatible ranges for a library user to resolve, but what decides an
    # image's bytes pinned exactly; constraints.txt pins every runtime
    # dependency to a version its range takes (what make and CI install).
    requires = {
        canonicalize_name(r.name): r
        for r in map(Requirement, _metadata(wheel).get_all("Requires-Dist") or [])
        if r.marker is None or "extra" not in str(r.marker)
    }
    assert len(requires) >= 5, requires
    for name, requirement in requires.items():
        exact = [s for s in requirement.specifier if s.operator == "=="]
        assert bool(exact) == (name in BYTES_DECIDING), requirement
    pins = _constraints()
    for name, requirement in requires.items():
        assert name in pins and requirement.specifier.contains(pins[name]), (requirement, pins.get(name))


def test_the_venv_lacks_debians_modules_and_runs_the_wheel(venv: Path) -> None:
    # Otherwise the tests below prove nothing.
    python = str(venv / "bin/python")
    for module in ("gi", "apt_pkg", "apt"):
        proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, cwd=venv)
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, module
    code = "import encapsulate, sys; print(encapsulate.__file__, sys.path)"
    where = ok(
        subprocess.run([python, "-c", code], capture_output=True, text=True, env=_environment(), cwd=venv)
    )
    # The scripts run that Python.
    for program in ("debchunk", "container-encapsulate"):
        assert (venv / "bin" / program).read_text().startswith(f"#!{python}\n"), program
    assert where.startswith(str(venv)) and "dist-packages" not in where, where
    assert ok(installed(venv, "debchunk", "--version")) == ok(development("debchunk", "--version"))


def test_the_installed_wheel_writes_the_checkouts_images(images: tuple[Path, Path]) -> None:
    wheel_layout, checkout_layout = images
    for tag in "abc":
        assert manifest_digest(wheel_layout, tag) == manifest_digest(checkout_layout, tag), tag
    # The layers themselves, compressed by the wheel's zlib-ng.
    assert sorted(p.name for p in (wheel_layout / "blobs/sha256").iterdir()) == sorted(
        p.name for p in (checkout_layout / "blobs/sha256").iterdir()
    )


@pytest.mark.parametrize(
    "command",
    [
        ("inspect", "{c}", "--json"),
        ("inspect", "{b}"),
        ("diff", "{a}", "{c}", "--json"),
        ("validate", "{a}"),
        ("validate", "{b}"),
        ("validate", "{c}"),
        ("sbom", "{c}"),
        ("map", "--rootfs", "{new}", "--json"),
        ("plan", "--rootfs", "{new}", "--max-layers", "8", "--prior", "{a}", "--json"),
    ],
)
def test_the_reading_tools(
    venv: Path, images: tuple[Path, Path], trees: tuple[Path, Path], command: tuple[str, ...]
) -> None:
    layout, _ = images
    refs = {tag: f"oci:{layout}:{tag}" for tag in "abc"}
    args = [a.format(new=trees[1], **refs) for a in command]
    # The same answer as the checkout gives.
    assert ok(installed(venv, "debchunk", *args)) == ok(development("debchunk", *args))


def test_the_reading_tools_answer(venv: Path, images: tuple[Path, Path], tmp_path: Path) -> None:
    layout, _ = images
    a, c = f"oci:{layout}:a", f"oci:{layout}:c"
    diff = json.loads(ok(installed(venv, "debchunk", "diff", a, c, "--json")))
    changed = {x["name"]: (x["old_version"], x["new_version"]) for x in diff["components"]["changed"]}
    assert changed["bash"] == ("5.2.37-2", "5.2.37-3")
    assert 0 < diff["download_bytes"] < diff["total_bytes"]
    assert "valid: " in ok(installed(venv, "debchunk", "validate", c))
    page = tmp_path / "report.html"
    ok(installed(venv, "debchunk", "report", c, "--prior", a, "-o", str(page)))
    html = page.read_text()
    assert html.lower().startswith("<!doctype html>") and "5.2.37-3" in html


def test_the_commit_paths_say_what_is_missing(
    venv: Path, images: tuple[Path, Path], trees: tuple[Path, Path], tmp_path: Path
) -> None:
    layout, _ = images
    repo = tmp_path / "repo"
    commit(trees[0], repo)
    out = tmp_path / "out"
    for program, *args in (
        ("container-encapsulate", "--repo", str(repo), "sample", f"oci:{out}:x"),
        ("debchunk", "map", "--repo", str(repo), "sample"),
        ("debchunk", "plan", "--repo", str(repo), "sample"),
        ("container-encapsulate", "--from", f"oci:{layout}:a", "--format", "ostree", f"oci:{out}:y"),
    ):
        proc = installed(venv, program, *args)
        assert proc.returncode == 1 and proc.stdout == "", (args, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"{program}: error: python3-gi: OSTree commits need libostree"), line
        assert "gir1.2-ostree-1.0" in line and "--system-site-packages" in line, line
    assert not out.exists()
    # The same repository is read where python3-gi is.
    ok(development("debchunk", "map", "--repo", str(repo), "sample", "--json"))
