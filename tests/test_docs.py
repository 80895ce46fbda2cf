"""The documentation cannot rot: every Python code block of the docs pages and the README runs (a
page's blocks in order, in one namespace, in a fresh folder), and the API reference names every
public name.

A page runs in the slow tier unless its first line holds ``<!-- docs-test: fast -->``; a block
right after ``<!-- docs-test: skip REASON -->`` is not run (a GPU, a cluster, hours of training:
the reason is on the page's source for a reader to see). ``mkdocs build --strict`` (in ``.ci/run``)
checks the links and the references.
"""

import re
from pathlib import Path

import pytest

import probinfer as pi

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"(<!-- docs-test: skip[^>]*-->\s*)?^```python\n(.*?)^```", re.S | re.M)


def blocks(page):
    """``[(source, skipped)]`` of the page's Python blocks, in order."""
    return [(m.group(2), m.group(1) is not None) for m in BLOCK.finditer(page.read_text())]


def _param(page):
    fast = page.read_text().startswith("<!-- docs-test: fast -->")
    marks = () if fast else (pytest.mark.slow,)
    return pytest.param(page, marks=marks, id=str(page.relative_to(ROOT)))


@pytest.mark.parametrize("page", [_param(p) for p in PAGES if blocks(p)])
def test_every_code_block_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, (source, skipped) in enumerate(blocks(page)):
        if skipped:
            continue
        code = compile(source, f"{page.name}, block {i + 1}", "exec")
        exec(code, namespace)  # noqa: S102 - the docs' own examples


def test_the_api_reference_names_every_public_name():
    text = (ROOT / "docs" / "api.md").read_text()
    documented = {line.split()[-1].rsplit(".", 1)[-1] for line in text.splitlines()
                  if line.startswith(":::")}  # fmt: skip
    numpyro = {"sample", "plate", "param", "deterministic", "factor", "dist", "constraints"}
    namespaces = {"kernels", "devices", "diagnostics", "report", "runners", "jobs", "models",
                  "inference", "health", "pfn", "dt"}  # fmt: skip
    missing = set(pi.__all__) - numpyro - documented - namespaces
    assert not missing, f"docs/api.md lacks {sorted(missing)}"


def test_docstring_examples_and_roles_become_markdown():
    """The API reference's griffe extension fences doctest runs (Markdown would read ``>>>`` as
    nested quotes) and turns Sphinx roles into code spans."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "griffe_docstrings", ROOT / "docs" / "griffe_docstrings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "See :class:`~probinfer.Target` and :func:`pi.mcmc`.\n\n    >>> x = 1  # doctest: +SKIP\n    >>> f(\n    ...     x)\n    2\n\nAfter."
    assert module.to_markdown(text) == (
        "See `Target` and `pi.mcmc`.\n\n    ```python\n    x = 1\n    f(\n        x)\n    # 2\n"
        "    ```\n\nAfter."
    )
