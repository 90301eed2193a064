"""The README stays true to the code: it opens with ``make demo`` and ``make
test``, its option table is the one the settings table writes, its links to
the repository's files resolve, and every ``debchunk`` command has a section.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from encapsulate.cli.main import debchunk_parser
from encapsulate.cli.settings import options_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPTIONS_BEGIN, OPTIONS_END = "<!-- options-table -->", "<!-- /options-table -->"
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.S | re.M)


def readme() -> str:
    """README.md's text."""
    return README.read_text(encoding="utf-8")


def prose(doc: Path) -> str:
    """``doc``'s text without its fenced code blocks (a ``#`` there is no heading)."""
    return FENCED.sub("", doc.read_text(encoding="utf-8"))


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub makes of ``doc``'s headings: lower case, punctuation
    but hyphens and underscores dropped, spaces as hyphens."""
    headings = re.findall(r"(?m)^#+ (.+)$", prose(doc))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def debchunk_commands() -> list[str]:
    """The names of the ``debchunk`` subcommands, from the parser itself."""
    for action in debchunk_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("debchunk_parser() has no subcommands")


def test_opens_with_make_demo_and_make_test() -> None:
    text = readme()
    first_section = text.index("\n## ")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no sh block"
    assert block.start() < first_section, "the make commands must come before the first section"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make demo", "make test"], commands
    # Only the title comes before the block.
    assert text[: block.start()].strip() == "# debchunk"


def test_option_table_is_the_settings_table() -> None:
    text = readme()
    assert text.count(OPTIONS_BEGIN) == 1 and text.count(OPTIONS_END) == 1
    inside = text.split(OPTIONS_BEGIN, 1)[1].split(OPTIONS_END, 1)[0]
    expected = options_markdown()
    assert inside.strip("\n") == expected, (
        "README.md's option table differs from encapsulate.cli.settings; paste the output of "
        "options_markdown() between the options-table markers"
    )
    # Every option of container-encapsulate has its row, so the check above is not vacuous.
    for flag in ("--max-layers", "--prior", "--compression", "--tls-verify", "--dest-tls-verify"):
        assert f"| `{flag} " in inside


def test_relative_links_resolve() -> None:
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        targets = LINK.findall(prose(doc))
        relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
        if doc == README:
            assert any(t.startswith("docs/") for t in relative), "README.md links to nothing under docs/"
        for target in relative:
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve()
            assert path.exists(), f"{doc.relative_to(ROOT)}: link to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path), f"{doc.relative_to(ROOT)}: link to {target}: no such heading"
        for anchor in (t[1:] for t in targets if t.startswith("#")):
            assert anchor in anchors(doc), f"{doc.relative_to(ROOT)}: link to #{anchor}: no such heading"


def test_every_debchunk_command_has_a_section() -> None:
    headings = set(re.findall(r"(?m)^### debchunk ([a-z-]+)\b", prose(README)))
    commands = debchunk_commands()
    assert {"map", "plan", "encapsulate", "inspect", "diff", "validate", "report"} <= set(commands)
    missing = [c for c in commands if c not in headings]
    assert not missing, f"README.md has no '### debchunk NAME' section for {missing}"
