"""docs/configuration.md is generated from `Settings`; a stale copy fails here (run `make docs`)."""

from __future__ import annotations

from pathlib import Path

from reconciler.settings import Settings, reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_reference_is_generated_from_settings() -> None:
    assert DOC.read_text() == reference_markdown(), "docs/configuration.md is stale: run `make docs`"


def test_every_setting_has_a_docstring_in_the_reference() -> None:
    text = reference_markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a docstring: it is the reference's text"
        assert f"`RECONCILER_{name.upper()}`" in text
