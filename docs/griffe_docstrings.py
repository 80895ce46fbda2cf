"""Griffe extension for the API reference: the house docstrings are Google style with doctest
examples and Sphinx roles, which Markdown does not know. Before mkdocstrings renders a
docstring this turns

* runs of ``>>>`` / ``...`` lines (and the output lines after them) into fenced Python blocks —
  Markdown would read ``>>>`` as three nested quotes and run the lines together — dropping
  ``# doctest:`` directives;
* ``:class:`~a.b.C``` and the other roles into code spans (``C``; the full path without ``~``).
"""

import re

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):`(~?)([^`]+)`")
_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def _role(match):
    path = match.group(2)
    return f"`{path.rsplit('.', 1)[-1] if match.group(1) else path}`"


def _fence_doctests(text):
    out, block, indent = [], [], ""

    def flush():
        if block:
            out.extend([f"{indent}```python", *(f"{indent}{line}" for line in block),
                        f"{indent}```"])  # fmt: skip
            block.clear()

    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")) and (stripped[3:4] in ("", " ")):
            if not block:
                indent = line[: len(line) - len(stripped)]
            block.append(_DIRECTIVE.sub("", stripped[4:]))
        elif block and stripped and line.startswith(indent):
            block.append(f"# {stripped}")  # expected output, shown as a comment
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


def to_markdown(text):
    """The docstring ``text`` with doctest runs fenced and Sphinx roles as code spans."""
    return _fence_doctests(_ROLE.sub(_role, text))


class DocstringMarkdown(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
