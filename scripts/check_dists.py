"""Check built distributions: one wheel and one sdist per package, PyPI-only requirements.

Usage: python scripts/check_dists.py DIST_DIR PACKAGE [PACKAGE ...]

A requirement that points at a URL or a path (PEP 508 `name @ url`) cannot be published to
PyPI; a requirement on another fmt package must carry a lower bound.
"""

from __future__ import annotations

import email.parser
import pathlib
import sys
import zipfile

from packaging.requirements import Requirement


def wheel_metadata(wheel: pathlib.Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def main(dist: pathlib.Path, packages: list[str]) -> int:
    problems = []
    for short in packages:
        stem = f"fmt_{short}"
        wheels = sorted(dist.glob(f"{stem}-*.whl"))
        sdists = sorted(dist.glob(f"{stem}-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            problems.append(f"{stem}: expected one wheel and one sdist, got {wheels + sdists}")
            continue
        meta = wheel_metadata(wheels[0])
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.url:
                problems.append(f"{stem}: requirement {line!r} is not a PyPI requirement")
            if req.name.startswith("fmt-") and not any(
                s.operator in (">=", "~=", "==") for s in req.specifier
            ):
                problems.append(f"{stem}: workspace requirement {line!r} has no lower bound")
        print(f"{wheels[0].name}: {meta['Name']} {meta['Version']}")
        for line in meta.get_all("Requires-Dist") or []:
            print(f"    requires {line}")
    for p in problems:
        print("ERROR:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1]), sys.argv[2:]))
