"""debchunk report: the page a real headless Chromium renders, its numbers,
its escaping, and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from encapsulate import RootfsOrigin
from encapsulate.oci.imgref import DEFAULT_REGISTRY
from encapsulate.oci.read import open_image
from encapsulate.tools.inspect import inspect_image
from encapsulate.tools.report import read_report
from encapsulate.tools.text import human_size
from tests.conftest import RunCli, debchunk_bytes, printable_lines
from tests.images import HOSTILE_NAMES, build, hostile_image
from tests.report_demo import WINDOW, dump_dom, png_size, sample_images, screenshot
from tests.sample import build_sample

REPO = Path(__file__).resolve().parent.parent


class Elements(HTMLParser):
    """Every start tag of a document with its attributes, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The sample built twice, bash updated in between: (prior, new)."""
    return sample_images(tmp_path_factory.mktemp("report"))


def report(run_cli: RunCli, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("report", *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def artifacts() -> Path:
    """Where CI keeps files for people to look at."""
    path = Path(os.environ.get("CI_ARTIFACTS") or REPO / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_report_renders_in_chromium(run_cli: RunCli, images: tuple[str, str], tmp_path: Path) -> None:
    prior, new = images
    page = tmp_path / "report.html"
    proc = report(run_cli, new, "--prior", prior, "-o", str(page))
    assert str(page) in proc.stdout

    with (
        open_image(new, DEFAULT_REGISTRY, blobs=False) as image,
        open_image(prior, DEFAULT_REGISTRY, blobs=False) as before,
    ):
        layers = [layer.digest for layer in image.layers]
        held = {layer.digest for layer in before.layers}
    dom = Elements(dump_dom(page))
    assert [t for t, _ in dom.tags].count("svg") >= 1
    bars = dom.having("rect", "layer-bar")
    assert [b["data-layer"] for b in bars] == [str(k) for k in range(1, len(layers) + 1)]
    assert len(layers) == 8
    # The layers to download are exactly those the prior lacks: bash's and the dpkg database's.
    downloads = [b["data-layer"] for b in bars if b["data-download"] == "1"]
    assert downloads == [str(k + 1) for k, d in enumerate(layers) if d not in held]
    assert len(downloads) == 2
    text = "".join(dom.text)
    for name in ("glibc", "systemd", "linux-signed-amd64", "bash", "volatile:dpkg"):
        assert name in text
    marked = {a["data-component"] for a in dom.having("tspan", "changed") if "data-component" in a}
    assert marked == {"bash", "volatile:dpkg"}
    changes = {a["data-component"] for a in dom.having("tr", "change")}
    assert changes == {"bash", "volatile:dpkg"}
    assert "5.2.37-2 → 5.2.37-3" in text

    shot, blank_shot = tmp_path / "report.png", tmp_path / "blank.png"
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>\n")
    screenshot(page, shot)
    screenshot(blank, blank_shot)
    assert png_size(shot) == png_size(blank_shot) == WINDOW
    # A chart in colour compresses far worse than a white page.
    assert shot.stat().st_size > 10 * blank_shot.stat().st_size
    shutil.copyfile(shot, artifacts() / "report.png")
    shutil.copyfile(page, artifacts() / "report.html")


def test_summary_numbers(images: tuple[str, str]) -> None:
    prior, new = images
    r = read_report(new, prior)
    with open_image(new, DEFAULT_REGISTRY, blobs=False) as image:
        labels = image.config.labels
        sizes = [layer.size for layer in image.layers]
    components = json.loads(labels["org.debchunk.components"])
    plan = json.loads(labels["org.debchunk.plan"])
    expected = 0.0
    for size, names in zip(sizes, [[], *plan], strict=True):
        keep = 1.0
        for n in names:
            keep *= 1 - components[n]["change_probability"]
            # A data part changes only with its package's upstream version,
            # then its package changes too: that change is counted once.
            if n.endswith(":data") and n.removesuffix(":data") in names:
                base = components[n.removesuffix(":data")]["change_probability"]
                keep /= 1 - min(components[n]["change_probability"], base)
        expected += size * (1 - keep)
    assert r.total_bytes == sum(sizes)
    assert r.expected_download_bytes == pytest.approx(expected)
    assert 0 < expected < sum(sizes)
    assert r.download_bytes == sum(layer.size for layer in r.layers if layer.download)
    assert r.changes is not None
    assert [(c.name, c.status) for c in r.changes] == [("bash", "changed"), ("volatile:dpkg", "changed")]
    bash = next(c for c in r.changes if c.name == "bash")
    assert bash.old is not None and bash.new is not None
    assert (bash.old.version, bash.new.version) == ("5.2.37-2", "5.2.37-3")
    # Every layer's components, largest first, from the plan label.
    assert [set(layer.components) for layer in r.layers] == [set(), *map(set, plan)]


def test_inspect_and_report_expect_the_same_update(images: tuple[str, str]) -> None:
    """One definition of the expected update: compressed size x layer change
    probability, summed over the layers holding components, in both tools."""
    _, new = images
    info = inspect_image(new, read_layers=False)
    r = read_report(new)
    with open_image(new, DEFAULT_REGISTRY, blobs=False) as image:
        labels = image.config.labels
        sizes = [layer.size for layer in image.layers]
    plan = json.loads(labels["org.debchunk.plan"])
    probabilities = [layer["change_probability"] for layer in info.to_json()["layers"]]
    assert probabilities[0] is None and all(p is not None for p in probabilities[1:])
    by_hand = sum(size * p for size, p in zip(sizes[1:], probabilities[1:], strict=True))
    assert len(plan) == len(sizes) - 1
    assert r.expected_download_bytes is not None and r.expected_download_bytes > 0
    assert info.image.expected_download_bytes == r.expected_download_bytes == pytest.approx(by_hand)
    # The JSON names it for what it is, apart from the plan's content figure.
    as_json = info.to_json()
    assert as_json["expected_download_bytes"] == r.expected_download_bytes
    assert "expected_update_bytes" not in as_json


def test_same_input_same_bytes_and_nothing_external(
    run_cli: RunCli, images: tuple[str, str], tmp_path: Path
) -> None:
    prior, new = images
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    report(run_cli, new, "--prior", prior, "-o", str(a), "--quiet")
    report(run_cli, new, "--prior", prior, "-o", str(b), "--quiet")
    assert a.read_bytes() == b.read_bytes()
    page = a.read_text()
    doc = Elements(page)
    for tag, attrs in doc.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for key in ("src", "href", "xlink:href", "srcset"):
            assert key not in attrs, (tag, attrs)
    assert "@import" not in page and "url(" not in page.replace("url(#ramp)", "")
    # A Content-Security-Policy that refuses any load, should one slip in.
    assert any(t == "meta" and a.get("http-equiv") == "Content-Security-Policy" for t, a in doc.tags)


def test_names_from_the_image_are_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    tree = build_sample(tmp_path / "tree")
    evil = "<img src=x onerror=alert(1)>&\"'</text></svg><b>"
    (tree / "opt/evil").mkdir()
    (tree / "opt/evil/payload").write_bytes(b"x" * 5000)
    os.setxattr(tree / "opt/evil", "user.component", evil.encode())
    build(RootfsOrigin(str(tree)), f"oci:{tmp_path}/img:1", max_layers=64)
    page = tmp_path / "r.html"
    report(run_cli, f"oci:{tmp_path}/img:1", "-o", str(page))
    assert evil not in page.read_text()
    dom = Elements(dump_dom(page))
    assert not any(t in ("img", "b") for t, _ in dom.tags)
    assert evil in "".join(dom.text)
    assert evil in {a.get("data-component") for _, a in dom.tags}


def test_image_without_labels(run_cli: RunCli, images: tuple[str, str], tmp_path: Path) -> None:
    """An image umoci built: layers and sizes, and what a debchunk image's holder downloads."""
    layout = tmp_path / "umoci"
    content = tmp_path / "content"
    content.mkdir()
    (content / "hello").write_text("hello\n")
    for args in (
        ["init", "--layout", str(layout)],
        ["new", "--image", f"{layout}:t"],
        ["insert", "--image", f"{layout}:t", str(content), "/etc"],
        ["insert", "--image", f"{layout}:t", str(content), "/opt"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    page = tmp_path / "plain.html"
    report(run_cli, f"oci:{layout}:t", "--prior", images[0], "-o", str(page))
    dom = Elements(dump_dom(page))
    bars = dom.having("rect", "layer-bar")
    assert len(bars) == 2 and all(b["data-download"] == "1" and "data-p" not in b for b in bars)
    text = "".join(dom.text)
    assert "no debchunk labels" in text and "expected update" not in text
    assert "Unknown: the image or the prior has no" in text


def test_other_transport(run_cli: RunCli, images: tuple[str, str], tmp_path: Path) -> None:
    """An oci-archive written by skopeo reports as its source does."""
    prior, new = images
    archive = tmp_path / "new.tar"
    subprocess.run(["skopeo", "copy", "--quiet", new, f"oci-archive:{archive}:2"], check=True)
    r = read_report(f"oci-archive:{archive}:2", prior)
    assert r.manifest_digest == read_report(new).manifest_digest
    assert human_size(r.download_bytes or 0) == human_size(read_report(new, prior).download_bytes or 0)


def _one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("debchunk: error: "), proc.stderr
    for w in words:
        assert w in lines[0]


def test_errors(run_cli: RunCli, images: tuple[str, str], tmp_path: Path) -> None:
    prior, new = images
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    page.write_text("the previous report\n")

    _one_error_line(run_cli("report", f"oci:{tmp_path}/missing:1", "-o", str(page)), "no such directory")
    _one_error_line(run_cli("report", new, "--prior", f"oci:{tmp_path}/missing", "-o", str(page)), "missing")
    not_layout = tmp_path / "not-a-layout"
    not_layout.mkdir()
    (not_layout / "file").write_text("x")
    _one_error_line(run_cli("report", f"oci:{not_layout}", "-o", str(page)), "not an OCI image layout")
    _one_error_line(run_cli("report", new.rsplit(":", 1)[0] + ":nosuchtag", "-o", str(page)), "nosuchtag")
    # Unwritable destinations: no such directory, a directory in the way.
    _one_error_line(
        run_cli("report", new, "-o", str(tmp_path / "nodir" / "r.html")), "cannot write the report"
    )
    _one_error_line(run_cli("report", new, "-o", str(tmp_path / "out")), "cannot write the report")
    # Every failure left the previous report alone and no temporary file behind.
    assert page.read_text() == "the previous report\n"
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-layout", "out"]
    # Usage errors exit 2.
    assert run_cli("report", new).returncode == 2
    # And a good run replaces it.
    report(run_cli, new, "--prior", prior, "-o", str(page), "--quiet")
    assert "layer-bar" in page.read_text()
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]


@pytest.mark.invalid_images  # a copy's document is truncated on purpose
@pytest.mark.parametrize("blob", ["config", "manifest"])
def test_truncated_blob(run_cli: RunCli, images: tuple[str, str], tmp_path: Path, blob: str) -> None:
    _, new = images
    path, tag = new.removeprefix("oci:").rsplit(":", 1)
    layout = tmp_path / "copy"
    shutil.copytree(path, layout)
    blobs = layout / "blobs/sha256"
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    digest = entry["digest"]
    if blob == "config":
        digest = json.loads((blobs / digest[7:]).read_text())["config"]["digest"]
    data = (blobs / digest[7:]).read_bytes()
    (blobs / digest[7:]).write_bytes(data[: len(data) // 2])
    page = tmp_path / "report.html"
    _one_error_line(run_cli("report", f"oci:{layout}:{tag}", "-o", str(page)), digest)
    assert not page.exists()


def test_hostile_names_from_hand_made_images(tmp_path: Path) -> None:
    """Names and versions with escape sequences, line breaks, a lone
    surrogate and markup: the page is UTF-8 with no control character but
    its own newlines, no markup from the image, every name still there
    (escaped); the command's line is one printable line."""
    old = hostile_image(tmp_path / "a")
    new = hostile_image(tmp_path / "b", version="2\x1b[0m")
    page = tmp_path / "r.html"
    proc = debchunk_bytes("report", new, "--prior", old, "-o", str(page))
    assert proc.returncode == 0 and proc.stderr == b"", proc
    assert len(printable_lines(proc.stdout)) == 1
    data = page.read_bytes()
    assert all(b >= 0x20 or b == 0x0A for b in data) and b"\x7f" not in data
    text = data.decode("utf-8")
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    dom = Elements(text)
    assert not {t for t, _ in dom.tags} & {"script", "iframe", "img"}
    components = {a["data-component"] for _, a in dom.tags if "data-component" in a}
    assert len(components) == len(HOSTILE_NAMES), components
    assert "evil\nOK: valid" in components and "<script>alert(1)</script>" in components
