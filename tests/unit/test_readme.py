"""The README's configuration reference is generated from the schema: keep it true."""

from __future__ import annotations

from pathlib import Path

from orthanc_nas import config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_configuration_key_with_its_default() -> None:
    text = README.read_text()
    block = text.split("<!-- config-reference:")[1].split("<!-- /config-reference -->")[0]
    generated = config.reference_table()
    assert generated in block, "run `python -m orthanc_nas.config` and paste it in README.md"


def test_readme_shows_both_commands() -> None:
    head = README.read_text()[:600]
    assert "scripts/start" in head and "scripts/test" in head
