"""The benchmark tables are generated, not typed: every block between ``<!-- table: NAME -->``
markers in docs/benchmarks.md and README.md is ``experiments/bench/tables.py``'s rendering of the
committed results files, and no markdown table sits outside such a block. A new result or a hand
edit without ``python experiments/bench/tables.py`` fails here, so the numbers cannot drift."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("tables", ROOT / "experiments/bench/tables.py")
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)

BLOCK = re.compile(r"<!-- table: (\S+) -->\n(.*?)\n<!-- end table: \1 -->", re.S)


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_each_block_is_its_renderers_output(name):
    page = (ROOT / tables.TABLES[name].page).read_text()
    blocks = {found: body for found, body in BLOCK.findall(page)}
    assert name in blocks, f"{tables.TABLES[name].page} has no block for {name}"
    assert blocks[name] == tables.block(name), f"run python experiments/bench/tables.py {name}"


@pytest.mark.parametrize("page", [tables.PAGE, tables.README])
def test_every_block_on_a_page_is_registered(page):
    text = (ROOT / page).read_text()
    opened = re.findall(r"<!-- table: (\S+) -->", text)
    closed = re.findall(r"<!-- end table: (\S+) -->", text)
    assert opened == closed == [found for found, _ in BLOCK.findall(text)]
    assert all(tables.TABLES[name].page == page for name in opened)


def test_the_benchmarks_page_has_no_table_outside_a_generated_block():
    text = BLOCK.sub("", (ROOT / tables.PAGE).read_text())
    typed = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    assert not typed, typed


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_each_block_states_its_results_dates(name):
    text = tables.block(name)
    for file in tables.TABLES[name].files:
        data = json.loads((tables.RESULTS / file).read_text())
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["date"]), file
        assert data["date"] in text, (name, file)


def test_rewrite_replaces_only_the_named_block():
    text = "a\n<!-- table: nuts -->\nold\n<!-- end table: nuts -->\nb\n"
    new = tables.rewrite(text, "nuts", "new")
    assert new == "a\n<!-- table: nuts -->\nnew\n<!-- end table: nuts -->\nb\n"
    with pytest.raises(ValueError, match="exactly one"):
        tables.rewrite("no markers", "nuts")


def test_the_formatting_helpers():
    assert [tables._sig(x) for x in (7.66, 14.52, 1315.45, 0.0787, 0.0195)] == [
        "7.7",
        "15",
        "1,315",
        "0.079",
        "0.019",
    ]
    assert tables._sig(-504.31, 5) == "−504.31"
    assert [tables._pct(x) for x in (0.0081, 0.126, 0.0999)] == ["0.8", "13", "10"]
    assert tables._span([246.3, 248.9], lambda x: f"{x:.0f}") == "246–249"
    assert tables._span([5.31, 5.34], lambda x: f"{x:.1f}") == "5.3"
