"""The words people read: a live is a "live" and its host "la personne qui anime",
as on the pages, in every package's messages, templates and scripts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
PYTHON_PACKAGES = ["signaling", "chat", "recordings", "live", "accounts", "core"]
WEB_FOLDERS = ["web/templates", "web/static"]
# French names of a live or its host that the pages do not use. "En direct", the
# on-air badge, is an adverb and stays.
FORBIDDEN_WORDS = re.compile(
    r"\b(?:le|du|au|ce|un|une|des|les)\s+directs?\b|^Directs?\b|\bhôtes?\b|\bhotes?\b",
    re.IGNORECASE | re.MULTILINE,
)


def python_strings(path: Path) -> list[tuple[int, str]]:
    """Return the line and text of each string literal of `path` except docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def web_lines(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text().splitlines(), start=1))


def wording_sources() -> list[Path]:
    sources = [
        path
        for package in PYTHON_PACKAGES
        for path in sorted((PROJECT_DIR / package).rglob("*.py"))
    ]
    for folder in WEB_FOLDERS:
        sources += sorted(
            path for path in (PROJECT_DIR / folder).rglob("*") if path.suffix in {".html", ".js"}
        )
    return sources


@pytest.mark.parametrize(
    "path", wording_sources(), ids=lambda path: str(path.relative_to(PROJECT_DIR))
)
def test_wording_names_live_and_host_as_pages(path: Path) -> None:
    texts = python_strings(path) if path.suffix == ".py" else web_lines(path)
    found = [
        f"{path.relative_to(PROJECT_DIR)}:{line}: {text.strip()}"
        for line, text in texts
        if FORBIDDEN_WORDS.search(text)
    ]
    assert found == [], "write « live » and « la personne qui anime » instead:\n" + "\n".join(found)


# Quoted words of docs/guide.fr.md that are examples, not labels of the pages.
GUIDE_EXAMPLES = {"gestion de classe en 4e"}


def test_guide_quotes_labels_of_pages() -> None:
    """The guide named a « S'inscrire » button, which the live page labels M'inscrire."""
    guide = (PROJECT_DIR / "docs" / "guide.fr.md").read_text()
    # the guide wraps lines, so a label may continue on the next one
    quoted = {" ".join(label.split()) for label in re.findall(r"« ([^»]+) »", guide)}
    pages = "\n".join(
        path.read_text()
        for folder in WEB_FOLDERS
        for path in sorted((PROJECT_DIR / folder).rglob("*"))
        if path.suffix in {".html", ".js"}
    )
    missing = sorted(quoted - GUIDE_EXAMPLES - {label for label in quoted if label in pages})
    assert missing == [], f"docs/guide.fr.md quotes labels that no page shows: {missing}"
