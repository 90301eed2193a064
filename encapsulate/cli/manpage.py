"""Manual pages and bash completion of ``debchunk`` and ``container-encapsulate``,
written from their argparse parsers, which the settings table
(``settings.py``) fills: the option lists of the pages and the words the
completion offers are the ones ``--help`` shows.

Usage: ``python -m encapsulate.cli.manpage OUTDIR`` writes ``debchunk.1``,
``container-encapsulate.1`` and the bash completion file ``debchunk`` (for
both commands) into OUTDIR; the Debian package's build runs it.  The pages'
date is ``SOURCE_DATE_EPOCH``'s (else 1 January 1970), so two builds of the
same source write the same bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .main import _version, debchunk_parser, encapsulate_parser


def roff_text(text: str) -> str:
    """``text`` as roff running text: backslashes and hyphens escaped, and a
    line that would start with a control character (``.`` or ``'``) guarded."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line if line.startswith((".", "'")) else line) for line in text.split("\n")]
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """The subcommands of ``parser``: name -> (its one-line help, its parser)."""
    found: dict[str, tuple[str, argparse.ArgumentParser]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found[name] = (helps.get(name, ""), sub)
    return found


def _spelled(action: argparse.Action) -> str:
    """How an option or argument is written, in roff: flags bold, the value italic."""
    if not action.option_strings:
        return f"\\fI{roff_text(str(action.metavar or action.dest))}\\fR"
    takes_value = action.nargs != 0
    value = f" \\fI{roff_text(str(action.metavar or action.dest.upper()))}\\fR" if takes_value else ""
    return ", ".join(f"\\fB{roff_text(flag)}\\fR{value}" for flag in action.option_strings)


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if action.choices is not None and action.option_strings:
        text += f" (one of: {', '.join(str(c) for c in action.choices)})"
    return roff_text(text)


def _options(parser: argparse.ArgumentParser, nested: bool = False) -> Iterator[str]:
    """The ``.TP`` entries of ``parser``'s arguments and options, by group
    (headed by ``.SS``, or by a bold paragraph when ``nested`` in a command's section)."""
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
        ]
        if not actions:
            continue
        title = roff_text(group.title or "")
        yield from (".PP", f"\\fB{title}\\fR") if nested else (f".SS {title}",)
        for action in actions:
            yield ".TP"
            yield _spelled(action)
            yield _help(action)


def _header(name: str, date: str, version: str) -> list[str]:
    title = roff_text(name.upper())
    return [f'.TH {title} 1 "{date}" "debchunk {roff_text(version)}" "User Commands"', ".SH NAME"]


def _date() -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


_SEE_ALSO = [".SH SEE ALSO", "\\fBskopeo\\fR(1), \\fBostree\\fR(1), /usr/share/doc/debchunk/README.md.gz"]


def debchunk_page(date: str, version: str) -> str:
    """``debchunk.1``: the command, then each subcommand with its options."""
    parser = debchunk_parser()
    lines = _header("debchunk", date, version)
    lines.append(f"debchunk \\- {roff_text(parser.description or '')}")
    lines += [".SH SYNOPSIS", "\\fBdebchunk\\fR \\fICOMMAND\\fR [\\fIOPTION\\fR...] [\\fIARGUMENT\\fR...]"]
    lines += [".br", "\\fBdebchunk\\fR \\fB\\-\\-version\\fR", ".SH DESCRIPTION"]
    lines.append(roff_text(parser.description or ""))
    lines.append(
        "Each command's options follow; \\fBdebchunk\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR shows them too."
    )
    lines.append(".SH COMMANDS")
    for name, (summary, sub) in _subcommands(parser).items():
        lines += [".SS", f"\\fBdebchunk {roff_text(name)}\\fR \\- {roff_text(summary)}", ".PP"]
        usage = sub.format_usage().removeprefix("usage: ").strip()
        lines += [".nf", roff_text(" ".join(usage.split())), ".fi", ".PP", roff_text(sub.description or "")]
        lines += [".RS"]
        lines += _options(sub, nested=True)
        lines += [".RE"]
    lines += [".SH EXIT STATUS", "0 on success, 1 when the command fails, 2 for a usage error."]
    lines += _SEE_ALSO
    return "\n".join(lines) + "\n"


def encapsulate_page(date: str, version: str) -> str:
    """``container-encapsulate.1``: ostree-ext's command of that name, its options."""
    parser = encapsulate_parser()
    lines = _header("container-encapsulate", date, version)
    lines.append(f"container-encapsulate \\- {roff_text(parser.description or '')}")
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines += [".SH SYNOPSIS", ".nf", roff_text(" ".join(usage.split())), ".fi", ".SH DESCRIPTION"]
    lines.append(roff_text(parser.description or ""))
    lines.append("It takes the options of ostree\\-ext's \\fBcontainer encapsulate\\fR, and more.")
    lines += [".SH OPTIONS", *_options(parser)]
    lines += [".SH EXIT STATUS", "0 on success, 1 when the command fails, 2 for a usage error."]
    lines += _SEE_ALSO
    return "\n".join(lines) + "\n"


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(flag for action in parser._actions for flag in action.option_strings)


def _shell_words(words: Sequence[str]) -> str:
    # Flags and command names are plain words (letters, digits, hyphens).
    assert all(word.replace("-", "").isalnum() for word in words), words
    return " ".join(words)


def bash_completion() -> str:
    """A bash completion file for both commands: subcommands, then each one's options."""
    parser = debchunk_parser()
    commands = _subcommands(parser)
    cases = "\n".join(
        f"        {name}) words='{_shell_words(_flags(sub))}' ;;" for name, (_, sub) in commands.items()
    )
    return f"""\
# bash completion of debchunk and container-encapsulate, written from their
# parsers by encapsulate/cli/manpage.py.

_debchunk() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} command='' words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            -*) ;;
            *) command=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case $command in
        '') words='{_shell_words([*commands, "--help", "--version"])}' ;;
{cases}
        *) words='' ;;
    esac
    if [[ $cur == -* || -z $command ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}

_container_encapsulate() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '{_shell_words(_flags(encapsulate_parser()))}' -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}

complete -F _debchunk debchunk
complete -F _container_encapsulate container-encapsulate
"""


def write_all(outdir: Path) -> list[Path]:
    """Both manual pages and the completion file, written into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    date, version = _date(), _version()
    files = {
        "debchunk.1": debchunk_page(date, version),
        "container-encapsulate.1": encapsulate_page(date, version),
        "debchunk": bash_completion(),
    }
    written = []
    for name, text in files.items():
        (outdir / name).write_text(text)
        written.append(outdir / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m encapsulate.cli.manpage OUTDIR", file=sys.stderr)
        return 2
    for path in write_all(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
