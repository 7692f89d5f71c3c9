"""The README is the operator's manual: every setting and every operator command must be in it."""

from __future__ import annotations

import re
from pathlib import Path

from radshare.core.config import PREFIX, SETTINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(RADSHARE_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    declared = {PREFIX + s.name for s in SETTINGS}
    assert declared - documented == set(), "settings missing from the README table"
    assert documented - declared == set(), "README documents settings that do not exist"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:1200]
    assert "make run" in head
    assert "make test" in head
