"""The Makefile installs every program the code, tests and benches run, and
``make demo`` does what it says.

A fresh Debian 12 machine has only the packages of ``Priority: required``; a
test or bench that runs anything else must find it in ``APT_PACKAGES``.  The
programs are found by reading the Python (``ast``): the argument lists given to
``subprocess``, the names given to ``shutil.which``, and the words of the shell
pipelines they run, followed through variables and wrapper functions, so a new
call is checked without anyone listing it here.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SCANNED = ("mapping", "chunker", "encapsulate", "benches", "tests")

# The Debian 12 package that ships each program (`dpkg -S $(command -v NAME)`).
# A program missing here fails the test: add it, and its package to the Makefile.
PROGRAM_PACKAGE = {
    "bash": "bash",
    "buildah": "buildah",
    "cat": "coreutils",
    "chroot": "coreutils",
    "chattr": "e2fsprogs",
    "chromium": "chromium",
    "cp": "coreutils",
    "docker-registry": "docker-registry",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "git": "git",
    "go": "golang-go",
    # tests/gotar's reference reader, built by the tests with go.
    "gotar": "golang-go",
    "gpg": "gpg",
    "gpgconf": "gpgconf",
    "gzip": "gzip",
    "mmdebstrap": "mmdebstrap",
    "mount": "mount",
    "ostree": "ostree",
    "pigz": "pigz",
    "podman": "podman",
    "python": "python3",  # a venv's interpreter, made from /usr/bin/python3
    "python3": "python3",
    "qemu-x86_64": "qemu-user",
    "rm": "coreutils",
    "setpriv": "util-linux",
    "skopeo": "skopeo",
    "tar": "tar",
    "timeout": "coreutils",
    "umoci": "umoci",
    "umount": "mount",
    "wc": "coreutils",
    "zcat": "gzip",
    "zstd": "zstd",
}

# Packages of `Priority: required` in Debian 12, so on every installation
# (a minbase debootstrap installs these and nothing else).  git, zstd, pigz and
# everything else are `optional` or `important`: a fresh machine may lack them.
REQUIRED_PRIORITY = frozenset({"bash", "coreutils", "dpkg", "gzip", "mount", "tar", "util-linux"})

# Words at the start of a shell command that are not programs.
SHELL_BUILTINS = frozenset({"set", "cd", "exec", "export", "true", "false", ":", "test", "[", "echo"})

LAUNCHERS = frozenset(
    {
        "subprocess.run",
        "subprocess.Popen",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "os.execv",
        "os.execvp",
        "os.execve",
        "os.execvpe",
        "asyncio.create_subprocess_exec",
    }
)
SHELL_LAUNCHERS = frozenset({"os.system", "os.popen", "asyncio.create_subprocess_shell"})

# The first word of a command line that may be missing (`[*prefix, python, ...]`).
EMPTY = ""
# The interpreter or an entry point of the project's own venv: not a Debian program.
OWN = "\0own"


class Unresolved(Exception):
    """An argument list whose program cannot be read from the source."""


@dataclass(frozen=True)
class Source:
    """One parsed file with a map from each node to its parent."""

    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]


class Param(NamedTuple):
    """A function's parameter, by position among all its parameters."""

    src: Source
    function: ast.FunctionDef
    position: int
    name: str


@dataclass(frozen=True)
class Site:
    """Where a program is run or looked up."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(CHECKOUT)}:{self.line}"


def parse_sources() -> list[Source]:
    """Every Python file under the scanned directories."""
    out = []
    for top in SCANNED:
        for path in sorted((CHECKOUT / top).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            out.append(Source(path, tree, parents))
    return out


class Finder:
    """Follows argument lists back to the program names they start with."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.functions: dict[str, list[tuple[Source, ast.FunctionDef]]] = {}
        for src in sources:
            for node in ast.walk(src.tree):
                if isinstance(node, ast.FunctionDef):
                    self.functions.setdefault(node.name, []).append((src, node))
        self.seen: dict[int, set[str]] = {}

    # -- scopes ------------------------------------------------------------

    def scopes(self, src: Source, node: ast.AST) -> Iterator[ast.AST]:
        """Enclosing functions, innermost first, then the module."""
        while node in src.parents:
            node = src.parents[node]
            if isinstance(node, ast.FunctionDef | ast.Module):
                yield node

    def bindings(self, src: Source, node: ast.AST, name: str) -> Iterator[Param | ast.expr]:
        """What ``name`` may hold at ``node``: values assigned to it in the
        innermost scope that binds it, or the parameter it is."""
        for scope in self.scopes(src, node):
            found = False
            if isinstance(scope, ast.FunctionDef):
                params = [*scope.args.posonlyargs, *scope.args.args, *scope.args.kwonlyargs]
                for index, arg in enumerate(params):
                    if arg.arg == name:
                        yield Param(src, scope, index, name)
                        found = True
            for inner in ast.walk(scope):
                value = assigned_value(inner, name)
                if value is not None:
                    yield value
                    found = True
                elif (
                    isinstance(inner, ast.For)
                    and isinstance(inner.target, ast.Name)
                    and inner.target.id == name
                ):
                    if not isinstance(inner.iter, ast.Tuple | ast.List):
                        raise Unresolved(f"`for {name} in {ast.unparse(inner.iter)}`")
                    yield from inner.iter.elts
                    found = True
            if found:
                return

    def values(self, src: Source, name: ast.Name) -> Iterator[tuple[Source, ast.expr]]:
        """Every expression ``name`` may stand for, a parameter's arguments included."""
        for binding in self.bindings(src, name, name.id):
            if isinstance(binding, Param):
                yield from self.arguments(binding)
            else:
                yield src, binding

    def arguments(self, param: Param) -> Iterator[tuple[Source, ast.expr]]:
        """The values given to a parameter: its default and every call's argument."""
        src, function, index, name = param  # index: among all parameters
        positional = [*function.args.posonlyargs, *function.args.args]
        offset = len(positional) - len(function.args.defaults)
        if index >= offset and index - offset < len(function.args.defaults):
            yield src, function.args.defaults[index - offset]
        for kw_arg, default in zip(function.args.kwonlyargs, function.args.kw_defaults, strict=True):
            if kw_arg.arg == name and default is not None:
                yield src, default
        is_method = bool(positional) and positional[0].arg in ("self", "cls")
        names = {function.name}
        fixture = fixture_of(src, function)
        if fixture is not None:
            names.add(fixture)
        for other in self.sources:
            if other is not src and fixture is None and not imports(other, src, function.name):
                continue
            for call in ast.walk(other.tree):
                if not isinstance(call, ast.Call):
                    continue
                callee = (
                    call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
                )
                for kw in call.keywords:
                    # A fixture hands out a nested function under another name
                    # (`run_cli(..., prefix=(...))`): a list given by keyword counts.
                    if kw.arg == name and callee in names:
                        yield other, kw.value
                if callee in names:
                    at = index - 1 if is_method and isinstance(call.func, ast.Attribute) else index
                    if 0 <= at < len(call.args) and index < len(positional):
                        yield other, call.args[at]

    # -- argument lists ----------------------------------------------------

    def first_words(self, src: Source, expr: ast.expr) -> set[str]:
        """The programs an argument list ``expr`` may start with."""
        key = id(expr)
        if key in self.seen:
            return self.seen[key]
        self.seen[key] = set()  # a cycle (a wrapper calling itself) adds nothing
        try:
            self.seen[key] = self.first_words_of(src, expr)
        except Unresolved:
            del self.seen[key]
            raise
        return self.seen[key]

    def first_words_of(self, src: Source, expr: ast.expr) -> set[str]:
        """``first_words`` without the memo."""
        if isinstance(expr, ast.List | ast.Tuple):
            words: set[str] = set()
            for element in expr.elts:
                if isinstance(element, ast.Starred):
                    head = self.first_words(src, element.value)
                else:
                    head = self.words(src, element)
                words |= head - {EMPTY}
                if EMPTY not in head:
                    return self.shell_words(src, expr, words)
            return words | {EMPTY}
        if isinstance(expr, ast.Call):
            name = ast.unparse(expr.func)
            if name in ("list", "tuple") and len(expr.args) == 1:
                return self.first_words(src, expr.args[0])
            callee = expr.func.attr if isinstance(expr.func, ast.Attribute) else name
            if callee in self.functions:
                words = set()
                for fsrc, function in self.functions[callee]:
                    for ret in ast.walk(function):
                        if isinstance(ret, ast.Return) and ret.value is not None:
                            words |= self.first_words(fsrc, ret.value)
                return words
        if isinstance(expr, ast.Name):
            words = set()
            for vsrc, value in self.values(src, expr):
                words |= self.first_words(vsrc, value)
            if words:
                return words
        raise Unresolved(f"`{ast.unparse(expr)}`")

    def words(self, src: Source, expr: ast.expr) -> set[str]:
        """One word of a command line: program names, or OWN for our interpreter."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if self.mentions_own(src, expr, 0):
            return {OWN}
        if isinstance(expr, ast.Call) and ast.unparse(expr.func) == "str" and len(expr.args) == 1:
            return self.words(src, expr.args[0])
        if (
            isinstance(expr, ast.BinOp)
            and isinstance(expr.op, ast.Div)
            and isinstance(expr.right, ast.Constant)
            and isinstance(expr.right.value, str)
        ):
            # A path built as DIR / "bin/NAME" runs NAME (a venv's python, say).
            return {Path(expr.right.value).name}
        if isinstance(expr, ast.Name):
            found: set[str] = set()
            for vsrc, value in self.values(src, expr):
                found |= self.words(vsrc, value)
            if found:
                return found
        raise Unresolved(f"`{ast.unparse(expr)}`")

    def mentions_own(self, src: Source, expr: ast.AST, depth: int) -> bool:
        """Whether ``expr`` is built from ``sys.executable`` (the venv's python or a script beside it)."""
        if depth > 5:
            return False
        for node in ast.walk(expr):
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.executable":
                return True
            if isinstance(node, ast.Name):
                for binding in self.bindings(src, node, node.id):
                    # Assignments only: a parameter is no evidence either way.
                    if not isinstance(binding, Param) and self.mentions_own(src, binding, depth + 1):
                        return True
        return False

    def shell_words(self, src: Source, expr: ast.List | ast.Tuple, words: set[str]) -> set[str]:
        """For `bash -c SCRIPT` (and sh), the programs SCRIPT runs as well."""
        if not words & {"bash", "sh"} or len(expr.elts) < 3:
            return words
        flag = expr.elts[1]
        if isinstance(flag, ast.Constant) and flag.value == "-c":
            for script in self.strings(src, expr.elts[2]):
                words |= script_programs(script)
        return words

    def strings(self, src: Source, expr: ast.expr) -> set[str]:
        """The texts a string expression may have; unknown parts become `\\x01`."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "\x01"
                for v in expr.values
            )
            return {text}
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return {a + b for a in self.strings(src, expr.left) for b in self.strings(src, expr.right)}
        if isinstance(expr, ast.Name):
            texts: set[str] = set()
            for vsrc, value in self.values(src, expr):
                texts |= self.strings(vsrc, value)
            if texts:
                return texts
        raise Unresolved(f"shell script `{ast.unparse(expr)}`")


def assigned_value(node: ast.AST, name: str) -> ast.expr | None:
    """The value ``node`` assigns to the plain name ``name``, if it does."""
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
        return node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
        return node.value
    return None


def fixture_of(src: Source, function: ast.FunctionDef) -> str | None:
    """The name of the pytest fixture that hands out ``function``, if one does:
    tests call it by the fixture's name, without importing it."""
    outer = src.parents.get(function)
    if not isinstance(outer, ast.FunctionDef):
        return None
    is_fixture = any("fixture" in ast.unparse(d) for d in outer.decorator_list)
    returns_it = any(
        isinstance(node, ast.Return) and isinstance(node.value, ast.Name) and node.value.id == function.name
        for node in outer.body
    )
    return outer.name if is_fixture and returns_it else None


def module_name(src: Source) -> str:
    """The dotted module name of a scanned file."""
    return ".".join(src.path.relative_to(CHECKOUT).with_suffix("").parts)


def imports(importer: Source, source: Source, name: str) -> bool:
    """Whether ``importer`` does ``from <source's module> import name``."""
    module = module_name(source)
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == module
        and any(alias.name == name for alias in node.names)
        for node in ast.walk(importer.tree)
    )


def script_programs(script: str) -> set[str]:
    """The first word of each command of a shell script (pipes, lists)."""
    programs = set()
    for command in re.split(r"\|\|?|&&|;|\n", script):
        words = shlex.split(command.replace("\x01", "X"))
        if not words:
            continue
        if words[0] in SHELL_BUILTINS:
            continue
        if "X" in words[0]:
            raise Unresolved(f"shell command `{command.strip()}`")
        programs.add(words[0])
    return programs


def programs_run() -> tuple[dict[str, list[Site]], list[str]]:
    """Every program the scanned code runs or looks up, with where; and the
    places whose program could not be read."""
    sources = parse_sources()
    finder = Finder(sources)
    found: dict[str, list[Site]] = {}
    unresolved = []
    for src in sources:
        for call in ast.walk(src.tree):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            name = ast.unparse(call.func)
            site = Site(src.path, call.lineno)
            try:
                if name in LAUNCHERS:
                    words = finder.first_words(src, call.args[0])
                elif name in SHELL_LAUNCHERS:
                    words = set().union(*(script_programs(s) for s in finder.strings(src, call.args[0])))
                elif name == "shutil.which":
                    words = finder.words(src, call.args[0])
                else:
                    continue
            except Unresolved as e:
                unresolved.append(f"{site}: cannot tell which program {e} runs")
                continue
            for word in words - {EMPTY, OWN}:
                found.setdefault(Path(word).name if "/" in word else word, []).append(site)
    return found, unresolved


def apt_packages(makefile: Path) -> set[str]:
    """The words of the Makefile's ``APT_PACKAGES :=`` (with its continued lines)."""
    text = makefile.read_text().replace("\\\n", " ")
    match = re.search(r"^APT_PACKAGES\s*:?=(.*)$", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"{makefile}: no APT_PACKAGES line")
    return set(match.group(1).split())


def missing_packages(makefile: Path) -> list[str]:
    """One line per program run whose package neither a fresh Debian nor the Makefile brings."""
    found, unresolved = programs_run()
    listed = apt_packages(makefile)
    problems = list(unresolved)
    for program, sites in sorted(found.items()):
        where = ", ".join(str(s) for s in sites[:3])
        package = PROGRAM_PACKAGE.get(program)
        if package is None:
            problems.append(f"{program} (run at {where}): add it and its Debian package to PROGRAM_PACKAGE")
        elif package not in listed and package not in REQUIRED_PRIORITY:
            problems.append(f"{program} (run at {where}): add {package} to APT_PACKAGES in {makefile.name}")
    return problems


def test_every_program_run_is_installed_by_the_makefile() -> None:
    assert missing_packages(CHECKOUT / "Makefile") == []


def test_the_scan_sees_the_known_programs() -> None:
    # The scan finds programs through each kind of call it follows: a literal
    # list, a wrapper's parameter, `bash -c` pipelines, a `for` over names given
    # to shutil.which, a method returning the list, a starred prefix.
    found, _ = programs_run()
    assert {"skopeo", "umoci", "podman", "pigz", "wc", "mmdebstrap", "setpriv", "git", "chromium"} <= set(
        found
    )
    # The bench's check for its tools: a `for` over names given to shutil.which.
    lines = (CHECKOUT / "benches/encapsulate_speed.py").read_text().splitlines()
    loop = next(
        i for i, line in enumerate(lines) if line.lstrip().startswith("for tool in (") and "pigz" in line
    )
    which = next(i for i in range(loop, len(lines)) if "shutil.which(tool)" in lines[i]) + 1
    popen = next(i for i, line in enumerate(lines) if "subprocess.Popen(" in line) + 1
    assert {str(s) for s in found["pigz"]} >= {
        f"benches/encapsulate_speed.py:{popen}",
        f"benches/encapsulate_speed.py:{which}",
    }


def test_the_check_fails_for_a_program_the_makefile_lacks(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    text = (CHECKOUT / "Makefile").read_text()
    makefile.write_text(re.sub(r"\bpigz\b", "", text))
    assert "pigz" not in apt_packages(makefile)
    problems = missing_packages(makefile)
    assert len(problems) == 1 and problems[0].startswith("pigz (run at benches/encapsulate_speed.py:")


def test_required_packages_are_required_here() -> None:
    # What the table takes for granted really is `Priority: required` on this Debian.
    # debchunk's machines are Debian (the Makefile installs with apt): dpkg is there.
    assert shutil.which("dpkg-query") is not None, "dpkg-query missing: this is not a Debian machine"
    for package in sorted(REQUIRED_PRIORITY):
        priority = subprocess.run(
            ["dpkg-query", "-W", "-f=${Priority}", package], capture_output=True, text=True, check=True
        ).stdout
        assert priority == "required", package


def test_demo_downloads_less_than_the_image_and_reports_the_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests import demo

    out = tmp_path / "demo"
    assert demo.main(["--output", str(out)]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"download: (\d+) bytes .* of (\d+) .*; ideal: (\d+) bytes", printed)
    assert match is not None, printed
    download, total, ideal = (int(g) for g in match.groups())
    # bash's layer and the dpkg database's, not the 18 MB image; the ideal is
    # bash's new binary and changelog (1.25 MB of content).
    assert 0 < ideal < download < total / 4
    assert 1_250_000 < ideal < 1_300_000
    report = out / "report.html"
    assert f"the report: {report}" in printed
    page = report.read_text()
    assert "bash" in page and "5.2.37-2" in page and "5.2.37-3" in page
    assert (out / "images/index.json").exists()
