"""The packages of the workspace and the fmt-* dependencies between them (stdlib only).

Used by `noxfile.py` and by CI (`python scripts/workspace.py changed BASE_REF` prints the
packages that changed since BASE_REF plus their dependents, as a JSON list).
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Changes here affect every package: run everything.
SHARED_INFRA = ("noxfile.py", "pyproject.toml", "scripts/", ".github/", ".ci/", "uv.lock")


def read_packages(root: pathlib.Path = ROOT) -> dict[str, dict]:
    """{short name: {"dist", "import", "path", "deps"}}, dependencies before dependents."""
    found = {}
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        deps = [
            m.group(1)
            for req in project.get("dependencies", [])
            if (m := re.match(r"\s*fmt-([a-z]+)", req))
        ]
        found[pyproject.parent.name] = {
            "dist": project["name"],
            "import": project["name"].replace("-", "_"),
            "path": pyproject.parent.relative_to(root).as_posix(),
            "deps": deps,
        }
    ordered: list[str] = []

    def visit(name: str, stack: tuple[str, ...] = ()) -> None:
        if name in stack:
            raise RuntimeError(f"dependency cycle between packages: {' -> '.join(stack)}")
        if name in ordered:
            return
        for dep in found[name]["deps"]:
            if dep not in found:
                raise RuntimeError(f"package {name!r} depends on unknown fmt-{dep}")
            visit(dep, (*stack, name))
        ordered.append(name)

    for name in found:
        visit(name)
    return {name: found[name] for name in ordered}


def closure(packages: dict[str, dict], name: str) -> list[str]:
    """`name` and every workspace package it depends on, dependencies first."""
    needed: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(packages[n]["deps"])
    return [n for n in packages if n in needed]


def with_dependents(packages: dict[str, dict], names: set[str]) -> list[str]:
    """`names` plus every package that depends on one of them, directly or not."""
    return [n for n in packages if set(closure(packages, n)) & names]


def changed(base_ref: str, root: pathlib.Path = ROOT) -> list[str]:
    packages = read_packages(root)
    files = subprocess.run(
        ["git", "diff", "--name-only", f"{base_ref}...HEAD"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if any(f == s or f.startswith(s) for f in files for s in SHARED_INFRA):
        return list(packages)
    touched = {f.split("/")[1] for f in files if f.startswith("packages/") and f.count("/") > 1}
    return with_dependents(packages, touched & set(packages))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "changed":
        print(json.dumps(changed(sys.argv[2])))
    elif len(sys.argv) == 2 and sys.argv[1] == "all":
        print(json.dumps(list(read_packages())))
    else:
        sys.exit("usage: workspace.py changed BASE_REF | workspace.py all")
