"""MkDocs hook: lay out the package as it installs, for mkdocstrings to read statically.

In the source tree ``probinfer.inference`` and ``probinfer.models`` live in ``inference/`` and
``models/`` (pyproject's package-dir), which griffe cannot map. Before the build this hook makes
``build/docs-src/probinfer/``: links to every entry of ``probinfer/`` plus ``inference`` and
``models`` — the installed layout, without installing (``mkdocs.yml`` points the handler there).
"""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def on_startup(**kwargs):
    package = ROOT / "build" / "docs-src" / "probinfer"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    for entry in (ROOT / "probinfer").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in ("inference", "models"):
        (package / name).symlink_to(ROOT / name)
