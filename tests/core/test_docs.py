"""The request catalogue and the README stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from dvsd.registry import load_handlers

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_catalogue_lists_every_registered_type():
    text = (DOCS / "requests.md").read_text()
    listed = {
        (int(number), name)
        for number, name in re.findall(r"^\| (\d+) \| (\w+) \|", text, re.M)
    }
    registered = {(h.rqst_type, h.name) for h in load_handlers(plugins=False)}
    assert listed == registered


def test_catalogue_marks_many_line_types():
    text = (DOCS / "requests.md").read_text()
    for entry in load_handlers(plugins=False):
        pattern = rf"^\| {entry.rqst_type} \| {entry.name} \| ([^|]+) \|"
        row = re.search(pattern, text, re.M)
        assert ("one node only" in row.group(1)) == entry.many_lines, entry.name
