"""full.config.schema: the defaults are the published setting as documented, with sources, in docs/full.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cf_ref.io import to_plain
from full.config import RunConfig

DOCS = Path(__file__).resolve().parents[3] / "docs" / "full.md"


def published_rows() -> list[tuple[str, str]]:
    """``(dotted setting, YAML value)`` of every row of the "Published setting" table of docs/full.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Published setting", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for key in re.findall(r"`([a-z_.]+)`", cells[0]):
                rows.append((key, cells[1]))
    return rows


def test_defaults_are_the_documented_published_setting():
    rows = published_rows()
    assert len(rows) >= 30, rows  # the table was found and read
    defaults = to_plain(RunConfig())
    for key, value in rows:
        node = defaults
        for part in key.split("."):
            node = node[part]
        assert node == yaml.safe_load(value), (key, node, value)
