"""Write docs/plugins/hooks.md from the hook specifications (guichet.core.hookspecs), so it cannot go stale.

.venv/bin/python scripts/hook_reference.py           # rewrite the page
.venv/bin/python scripts/hook_reference.py --check   # exit 1 if the page is stale (tests/test_hookspecs.py)
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from guichet.core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "plugins" / "hooks.md"
_VERSION = re.compile(r"^\.\. (versionadded|deprecated):: (\S+)$")
_PARAM = re.compile(r"^:param (\w+): (.*)$")


def specs() -> dict[str, object]:
    """The specs in the order core/hookspecs.py declares them."""
    found = [
        (f.__code__.co_firstlineno, n, f)
        for n, f in vars(hookspecs).items()
        if callable(f) and hasattr(f, "guichet_spec")
    ]
    return {name: function for _line, name, function in sorted(found)}


def kind(spec: object) -> str:
    options = spec.guichet_spec  # type: ignore[attr-defined]
    if options["firstresult"]:
        return "first result"
    return "observer" if inspect.signature(spec).return_annotation in ("None", None) else "collected"  # type: ignore[arg-type]


def markdown(text: str) -> str:
    """The docstring's reST inline markup as Markdown."""
    text = re.sub(r":class:`(?:[\w.]+\.)?(\w+)`", r"`\1`", text)
    return text.replace("``", "`")


def section(name: str, spec: object) -> str:
    doc = inspect.getdoc(spec) or ""
    versions: dict[str, str] = {}
    params: list[list[str]] = []
    body: list[str] = []
    for line in doc.splitlines():
        if match := _VERSION.match(line):
            versions[match.group(1)] = match.group(2)
        elif match := _PARAM.match(line):
            params.append([match.group(1), match.group(2)])
        elif params and line.strip():  # a parameter's description goes on
            params[-1][1] += " " + line.strip()
        else:
            body.append(line)
    declared = inspect.signature(spec)  # type: ignore[arg-type]
    arguments = ", ".join(f"{p.name}: {p.annotation}" for p in declared.parameters.values())
    signature = f"def {name}({arguments}) -> {declared.return_annotation}"
    facts = [kind(spec), f"added in {versions['versionadded']}"]
    if "deprecated" in versions:
        facts.append(f"**deprecated since {versions['deprecated']}**")
    lines = [
        f"## {name}",
        "",
        "```python",
        signature,
        "```",
        "",
        " · ".join(facts),
        "",
        markdown("\n".join(body).strip()),
    ]
    if params:
        lines += ["", *[f"- `{param}`: {markdown(text)}" for param, text in params]]
    return "\n".join(lines).strip() + "\n"


def render() -> str:
    found = specs()
    table = ["| hook | kind | added |", "| --- | --- | --- |"]
    for name, spec in found.items():
        added = _VERSION.search(
            "\n".join(line for line in (inspect.getdoc(spec) or "").splitlines() if "versionadded" in line)
        )
        table.append(f"| [{name}](#{name}) | {kind(spec)} | {added.group(2) if added else '?'} |")
    changes = [f"- **{version}**: {text}" for version, text in hookspecs.HOOK_API_CHANGES.items()]
    head = [
        "# Hook reference",
        "",
        "<!-- Written by scripts/hook_reference.py from core/hookspecs.py; tests/test_hookspecs.py fails when it is"
        " stale. Edit the specs' docstrings, then run the script. -->",
        "",
        f"Hook API version **{hookspecs.HOOK_API_VERSION}** (`guichet.core.HOOK_API_VERSION`; `guichet plugins` shows"
        " it). A plugin is a module of plain `def` functions marked with `guichet.core.hookimpl`, each named after"
        " the hook it implements and taking any subset of its arguments. What a plugin may import is in"
        " [api.md](api.md); how a hook is retired, in [deprecation.md](deprecation.md).",
        "",
        "Kinds: **collected**, every plugin's answer is used, in the order of `[plugins] enabled`; **first result**,"
        " the first plugin that does not return None answers and later ones are not called; **observer**, every"
        " plugin is told, and what it returns is ignored.",
        "",
        *table,
        "",
        "## Versions",
        "",
        *changes,
        "",
    ]
    return "\n".join(head) + "".join(f"\n{section(name, spec)}" for name, spec in found.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/plugins/hooks.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run scripts/hook_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
