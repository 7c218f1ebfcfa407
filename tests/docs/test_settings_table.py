"""The README's settings table names every setting (`RECONCILER_<FIELD>`), so none is undocumented."""

from __future__ import annotations

from pathlib import Path

from reconciler.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    table = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    missing = [
        f"RECONCILER_{name.upper()}"
        for name in Settings.model_fields
        if f"`RECONCILER_{name.upper()}`" not in table
    ]
    assert missing == [], f"add these to the README's settings table: {missing}"
