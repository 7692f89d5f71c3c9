"""The documents point at code that exists: every `path.py` and `path.py::name` in README.md, SECURITY.md and
docs/*.md names a file (under src/radshare/ or the repository root) and a definition in it. Moving code without
updating the documents fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "radshare"
DOCUMENTS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = re.compile(r"`([\w./-]+/[\w.-]+\.(?:py|js|css|html|txt|toml))(?:::([\w., ]+))?`")


def _references() -> list[tuple[str, str, str]]:
    found = []
    for document in DOCUMENTS:
        for match in REFERENCE.finditer(document.read_text()):
            if not match.group(1).startswith("var/"):  # made at run time
                found.append((document.name, match.group(1), match.group(2) or ""))
    return found


def _file(path: str) -> Path | None:
    for base in (SRC, ROOT):
        if (base / path).is_file():
            return base / path
    return None


def _defines(source: str, name: str) -> bool:
    name = name.rsplit(".", 1)[-1]
    pattern = rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]"
    return re.search(pattern, source, re.MULTILINE) is not None


def test_the_documents_cite_code() -> None:
    assert len(_references()) > 50


@pytest.mark.parametrize(("document", "path", "names"), _references())
def test_each_cited_file_and_name_exists(document: str, path: str, names: str) -> None:
    file = _file(path)
    assert file is not None, f"{document} cites {path}, which does not exist"
    missing = [n for n in (n.strip() for n in names.split(",")) if n and not _defines(file.read_text(), n)]
    assert missing == [], f"{document} cites {path}::{', '.join(missing)}, not defined there"


LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_each_relative_link_and_image_exists(document: Path) -> None:
    """Links and images such as the README's screenshots (``docs/screenshots/``) point at committed files."""
    missing = [link for link in LINK.findall(document.read_text()) if not (document.parent / link).exists()]
    assert missing == [], f"{document.name} links to files that do not exist: {missing}"
