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


def on_files(files, config, **kwargs):
    """The experiments' figures (``experiments/<family>/figures|results/*.png``) join the site
    as ``figures/<family>/<name>.png``, so pages show the figures the scripts make — no copy
    in ``docs/`` to go stale, and ``--strict`` fails on a link to a figure that is gone."""
    from mkdocs.structure.files import File

    for path in sorted((ROOT / "experiments").glob("*/*/*.png")):
        if path.parent.name in ("figures", "results"):
            uri = f"figures/{path.parent.parent.name}/{path.name}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, **kwargs):
    """``<!-- job-reference -->`` becomes the job file's reference, generated from the schemas
    the job reader checks (``probinfer.jobs.spec``) and the registered methods' signatures, so it
    cannot drift from what ``probinfer run`` accepts."""
    marker = "<!-- job-reference -->"
    if marker not in markdown:
        return markdown
    return markdown.replace(marker, job_reference())


def job_reference():
    import inspect

    from probinfer import runners
    from probinfer.jobs import spec

    def table(schema):
        rows = ["| key | type | meaning |", "|---|---|---|"]
        for key, (types, meaning) in schema.items():
            kinds = " or ".join({"str": "string", "dict": "table", "list": "array"}.get(
                t.__name__, t.__name__) for t in types)  # fmt: skip
            rows.append(f"| `{key}` | {kinds} | {meaning} |")
        return "\n".join(rows)

    parts = ["**Top-level keys**", "", table(spec.SCHEMA)]
    for name, schema in [("model", spec.MODEL_SCHEMA), ("data", spec.DATA_SCHEMA),
                         ("calibrate", spec.CALIBRATE_SCHEMA), ("compare", spec.COMPARE_SCHEMA),
                         ("distributed", spec.DISTRIBUTED_SCHEMA), ("report", spec.REPORT_SCHEMA)]:  # fmt: skip
        parts += ["", f"**`[{name}]`**", "", table(schema)]
    rows = [
        "| `name` | its settings (keyword arguments; defaults in the API reference) |",
        "|---|---|",
    ]
    for method in runners.job_names():
        runner = runners.job_method(method)[0]
        settings = [p for p in inspect.signature(runner).parameters.values()
                    if p.kind == p.KEYWORD_ONLY and p.name not in spec.RESERVED_SETTINGS]  # fmt: skip
        rows.append(f"| `{method}` | " + ", ".join(f"`{p.name}`" for p in settings) + " |")
    parts += ["", "**`[method]`**: `name` and the method's own settings", "", "\n".join(rows)]
    return "\n".join(parts)
