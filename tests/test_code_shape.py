"""The shape the stages keep: short functions with few parameters, a test
file for every module, one home for each shared fact, and a build that
reads in one screen.  Read from the source, so a change that breaks the
shape fails here, not in a review."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("mapping", "chunker", "encapsulate")
MAX_LINES = 80
MAX_PARAMETERS = 8
# Modules whose test file is named for what they do rather than their path.
TEST_FILE_OF = {
    "encapsulate/build.py": "test_build.py",
    "encapsulate/config.py": "test_config.py",
    "encapsulate/rechunk.py": "test_rechunk.py",
    "encapsulate/cli/__main__.py": "test_cli_main.py",
    "encapsulate/oci/layout.py": "test_layout.py",
    "encapsulate/oci/imgref.py": "test_imgref.py",
    "encapsulate/oci/deliver.py": "test_oci_deliver.py",
    "encapsulate/oci/push.py": "test_push.py",
    "encapsulate/oci/referrers.py": "test_sbom.py",
    "encapsulate/tools/sbom.py": "test_sbom.py",
    "encapsulate/cli/sbom.py": "test_sbom.py",
    "encapsulate/oci/sigstore.py": "test_sign.py",
    "encapsulate/oci/lookaside.py": "test_sign.py",
    "encapsulate/cli/signing.py": "test_sign.py",
    "encapsulate/tools/inspect.py": "test_inspect.py",
    "encapsulate/tools/validate.py": "test_validate.py",
    "encapsulate/tools/report.py": "test_report.py",
    "encapsulate/cli/progress.py": "test_progress.py",
    "mapping/_gvariant.py": "test_gvariant.py",
    "mapping/errors.py": "test_mapping_errors.py",
    "mapping/model.py": "test_mapping_model.py",
    "mapping/base.py": "test_mapping_base.py",
}


def _modules() -> list[Path]:
    return sorted(p for stage in STAGES for p in (ROOT / stage).rglob("*.py"))


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")]
    return names + [x.arg for x in (a.vararg, a.kwarg) if x is not None]


def test_functions_are_short_and_take_few_parameters() -> None:
    long, wide = [], []
    for path in _modules():
        for node in _functions(path):
            where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
            assert node.end_lineno is not None
            if node.end_lineno - node.lineno + 1 > MAX_LINES:
                long.append(where)
            if len(_parameters(node)) > MAX_PARAMETERS:
                wide.append(where)
    assert long == [], f"over {MAX_LINES} lines"
    assert wide == [], f"over {MAX_PARAMETERS} parameters"


def _test_file_names(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    parts = rel.with_suffix("").parts
    if parts[-1] == "__init__":
        return [f"test_{parts[-2]}_package.py"]
    name = parts[-1].lstrip("_")
    names = [f"test_{name}.py", *(f"test_{parts[k]}_{name}.py" for k in range(len(parts) - 1))]
    return [TEST_FILE_OF.get(str(rel), names[0]), *names]


def test_every_module_has_a_test_file_of_its_own() -> None:
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    missing = []
    for path in _modules():
        if path.name == "__init__.py" and not any(True for _ in _functions(path)):
            continue  # a package face that only hands names on
        if not tests.intersection(_test_file_names(path)):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def _homes(pattern: str) -> set[str]:
    """The modules of the stages whose code matches ``pattern``."""
    found = re.compile(pattern)
    return {str(p.relative_to(ROOT)) for p in _modules() if found.search(p.read_text(encoding="utf-8"))}


def test_one_home_for_each_shared_fact() -> None:
    assert _homes(r"def parse_imgref\(") == {"encapsulate/oci/imgref.py"}
    assert _homes(r"subprocess\.\w+\(\s*\[\s*\"skopeo\"") == {"encapsulate/oci/skopeo.py"}
    assert _homes(r"\"rootfs\": \{\"type\": \"layers\"") == {"encapsulate/describe.py"}
    assert _homes(r"(?<![\w.])1\.0 - 1e-\d+|0\.99999+") == {"chunker/cost.py"}
    # Layers are read by mapping's reader alone (an OCI archive, a tar of a
    # layout, is opened by oci/read.py; that is no layer).
    assert _homes(r"TarReader\(") == {"mapping/layers.py"}
    readers = _homes(r"tarfile\.open\(")
    assert not [h for h in readers if h.startswith(("encapsulate/tools/", "encapsulate/write/"))], readers
    assert _homes(r"decompressobj\(") == {"mapping/layers.py"}
    # The yearly change rate of a weekly probability, once (chunker.cost.changes_per_year).
    assert _homes(r"365\.0?\s*/\s*7|52\.0?\s*\*\s*math\.log") <= {"chunker/cost.py"}


def test_build_image_reads_in_one_screen() -> None:
    (node,) = [n for n in _functions(ROOT / "encapsulate/build.py") if n.name == "build_image"]
    assert node.end_lineno is not None and node.end_lineno - node.lineno + 1 <= 30
    # Its body names the steps, one call each, over the one context.
    steps = [
        n.func.id
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.args
        and isinstance(n.args[0], ast.Name)
        if n.args[0].id == "context"
    ]
    assert steps == [
        "check_destination",
        "open_previous_build",
        "open_origin",
        "open_base",
        "open_comparison",
        "map_origin",
        "plan_layers",
        "describe",
        "make_sbom",
        "write_contentmeta",
        "write_and_deliver",
        "deliver_sbom",
        "compare",
    ]
