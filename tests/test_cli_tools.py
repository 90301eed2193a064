"""The read-back tools on the command line (``encapsulate.cli.tools``): each
command parses its IMGREFs once, hands the registry options it was given
to one library call, and renders what it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import encapsulate.cli.tools as cli_tools
from encapsulate.cli.main import debchunk_main
from encapsulate.oci.imgref import ImageRef, RegistryOptions
from encapsulate.tools.validate import Validation


def _recording(monkeypatch: pytest.MonkeyPatch, name: str, result: Any) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append((*args, kwargs))
        return result

    monkeypatch.setattr(cli_tools, name, record)
    return calls


class _Printable:
    def to_json(self) -> dict[str, int]:
        return {"n": 1}


def test_inspect_and_diff_hand_on_parsed_refs_and_registry_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _recording(monkeypatch, "inspect_image", _Printable())
    assert debchunk_main(["inspect", "registry:h.example/os:1", "--tls-verify", "false", "--json"]) == 0
    ((ref, options),) = calls
    assert ref == ImageRef("registry", "h.example/os:1")
    assert options == {"fetch": False, "read_layers": True, "registry": RegistryOptions(tls_verify=False)}
    assert capsys.readouterr().out.strip().replace(" ", "").replace("\n", "") == '{"n":1}'
    calls = _recording(monkeypatch, "diff_images", _Printable())
    assert debchunk_main(["diff", "oci:/a:1", "oci:/b:2", "--no-layers", "--fetch", "--json"]) == 0
    ((old, new, options),) = calls
    assert (old, new) == (ImageRef("oci", "/a", "1"), ImageRef("oci", "/b", "2"))
    assert options == {"fetch": True, "read_layers": False, "registry": RegistryOptions()}


def test_report_and_validate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls = _recording(
        monkeypatch, "validate_image", Validation("oci:/x", [f"problem {k}" for k in range(7)])
    )
    assert debchunk_main(["validate", "oci:/x", "--tls-verify", "true"]) == 1
    assert calls == [("oci:/x", RegistryOptions(tls_verify=True), {})]
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "debchunk: error: oci:/x: 7 problems:"
    assert err[1:] == [f"  problem {k}" for k in range(5)] + ["  ... and 2 more"]
    _recording(monkeypatch, "validate_image", Validation("oci:/x", ["one"]))
    assert debchunk_main(["validate", "oci:/x"]) == 1
    assert capsys.readouterr().err == "debchunk: error: oci:/x: one\n"
    _recording(monkeypatch, "validate_image", Validation("oci:/x", [], blobs=3, layers=1, size=2048))
    assert debchunk_main(["validate", "oci:/x"]) == 0
    assert capsys.readouterr().out == "oci:/x: valid: 3 blobs, 1 layer, 2.0 KiB\n"

    class _Report:
        layers = (1, 2)
        total_bytes = 4096
        download_bytes = 1024

    page = str(tmp_path / "r.html")
    calls = _recording(monkeypatch, "write_report", _Report())
    assert debchunk_main(["report", "oci:/x", "--prior", "oci:/y", "-o", page, "--tls-verify", "false"]) == 0
    assert calls == [("oci:/x", page, "oci:/y", RegistryOptions(tls_verify=False), {})]
    assert capsys.readouterr().out == f"{page}: 2 layers, 4.0 KiB; download from the prior 1.0 KiB\n"


def test_a_bad_imgref_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert debchunk_main(["inspect", "ftp:/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("debchunk: error: ftp:/x: unknown transport 'ftp'") and err.count("\n") == 1
