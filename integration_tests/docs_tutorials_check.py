"""The Python code of every tutorial (docs/tutorials/*.md) runs as written.

Each page's ```python blocks run in order in one namespace, in a temporary working
directory (the tutorials write run directories and plots there). A block right after the
line `<!-- not run by the docs test ... -->` (the multi-host entry point, which needs a
cluster) is only compiled. Run by `nox -s tutorials`, by path: the whole set takes minutes
of compilation (PM steps, their gradient, NUTS through the forward model), too long for
`nox -s tests`, so the name does not start with `test_`.
"""

import pathlib
import re

import pytest

TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "tutorials"
PAGES = sorted(TUTORIALS.glob("*.md"))
NOT_RUN = "<!-- not run by the docs test"
BLOCK = re.compile(r"^(<!--[^\n]*-->\n)?```python\n(.*?)^```", flags=re.S | re.M)


def _blocks(page: pathlib.Path) -> list[tuple[bool, str]]:
    """(runs, code) of each python block of `page`."""
    return [
        (not (m.group(1) or "").startswith(NOT_RUN), m.group(2))
        for m in BLOCK.finditer(page.read_text())
    ]


def test_every_tutorial_is_found():
    names = {p.name for p in PAGES}
    assert {"forward_model.md", "inference.md", "multi_gpu.md", "multi_host.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_code_runs(page, tmp_path, monkeypatch):
    blocks = _blocks(page)
    assert blocks, f"{page.name} has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "tutorial"}  # not "__main__": entry points stay idle
    for i, (runs, code) in enumerate(blocks):
        compiled = compile(code, f"{page.name} (python block {i})", "exec")
        if runs:
            exec(compiled, namespace)
