"""The Docker image is tested by equivalence with CI's Debian 13 root: keep the two the same."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _packages() -> list[str]:
    lines = (REPO / "scripts" / "debian-packages").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_and_the_ci_root_are_the_same_debian_release_and_packages() -> None:
    docker = (REPO / "Dockerfile").read_text()
    root = (REPO / "scripts" / "trixie-root").read_text()
    assert re.search(r"^FROM debian:13-slim$", docker, re.M)
    assert re.search(r"^suite=trixie$", root, re.M)  # Debian 13
    # Both take their packages from the one list, and install the project the same way.
    assert "COPY scripts/debian-packages " in docker and "/tmp/debian-packages)" in docker
    assert '"$here/debian-packages"' in root
    assert re.search(r"^RUN \$\{ORTHANC_NAS_HOME\}/scripts/install", docker, re.M)
    assert '"$inside/scripts/install"' in root
    assert "apt-get install" not in root  # nothing but scripts/install installs packages there
    assert {"orthanc", "orthanc-python", "orthanc-dicomweb", "python3-venv"} <= set(_packages())


def test_install_reads_the_same_list() -> None:
    install = (REPO / "scripts" / "install").read_text()
    assert '"$HOME_DIR/scripts/debian-packages"' in install
