"""Print the requirements of pyproject.toml's base dependencies plus the named extras, one a line.

The Dockerfiles install these before copying the sources, so a code change rebuilds only the last,
small layer instead of reinstalling transformers and friends. Self-references such as
`labs[core,gateway]` (the `all` extra) are expanded. Standard library only: it runs before anything
is installed.

    python deploy/pyproject_requirements.py pyproject.toml core > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF_REFERENCE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\[([^\]]*)\]\s*$")


def requirements(pyproject: str | Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    name = project["name"].lower()
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject_requirements: no extra {extra!r} (known: {', '.join(sorted(optional))})")
        seen.add(extra)
        for requirement in optional[extra]:
            match = SELF_REFERENCE.match(requirement)
            if match and match.group(1).lower() == name:
                pending.extend(e.strip() for e in match.group(2).split(",") if e.strip())
            else:
                out.append(requirement)
    return list(dict.fromkeys(out))


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    for line in requirements(argv[0], argv[1:]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
