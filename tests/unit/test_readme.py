"""The docs cannot drift: the configuration reference (docs/configuration.md) is generated from
the schema, the README shows both commands first, and every local link resolves."""

from __future__ import annotations

import re
from pathlib import Path

from orthanc_nas import config

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CONFIGURATION = REPO / "docs" / "configuration.md"


def test_the_configuration_reference_lists_every_key_with_its_default() -> None:
    text = CONFIGURATION.read_text()
    block = text.split("<!-- config-reference:")[1].split("<!-- /config-reference -->")[0]
    generated = config.reference_table()
    assert generated in block, ("run `python -m orthanc_nas.config` and paste it in "
                                "docs/configuration.md")


def test_readme_shows_both_commands() -> None:
    head = README.read_text()[:600]
    assert "scripts/start" in head and "scripts/test" in head


def test_local_links_resolve() -> None:
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
