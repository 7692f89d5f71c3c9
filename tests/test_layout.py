"""The source's shape (docs/architecture.md "How the apps depend on each other"): no import hides inside a function
to dodge the layers, and no file grows past what a reader takes in."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "radshare"
MAX_LINES = 600
REASON = "# late import:"


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _late_imports(path: Path) -> list[tuple[int, str]]:
    """Imports inside a function that neither sit in an ``AppConfig.ready`` (where Django wants them: the models
    are loaded only then) nor say on their first line why they are late."""
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)) and function is not None:
                in_ready = path.name == "apps.py" and function == "ready"
                if not in_ready and REASON not in lines[child.lineno - 1]:
                    found.append((child.lineno, lines[child.lineno - 1].strip()))
            else:
                visit(child, function)

    visit(ast.parse(source), None)
    return found


def test_no_import_hides_in_a_function_without_a_reason() -> None:
    late = {
        f"{path.relative_to(SRC)}:{line}": text for path in _sources() for line, text in _late_imports(path)
    }
    assert late == {}, f"move these to the top of the module, or say why on the line ({REASON} ...)"


def test_the_check_finds_a_late_import(tmp_path: Path) -> None:
    module = tmp_path / "views.py"
    module.write_text(
        "def view():\n    from radshare.shares import services\n\n"
        "def other():\n    import json  # late import: a reason\n"
    )
    assert _late_imports(module) == [(2, "from radshare.shares import services")]


def test_no_source_file_is_longer_than_a_reader_takes_in() -> None:
    long = {
        str(p.relative_to(SRC)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
