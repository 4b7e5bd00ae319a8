"""libFuzzer on the C gate (plugin/gate/fuzz_gate.c): credential and key parsing of arbitrary
headers and URIs under AddressSanitizer and UBSan, and the memory's promise that a request is
allowed without Python only as Python said (path-only decisions for requests with arguments).

Short in the normal run; ``ORTHANC_NAS_FUZZ_SECONDS`` runs longer (docs/testing.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GATE = Path(__file__).resolve().parents[2] / "plugin" / "gate"
SECONDS = int(os.environ.get("ORTHANC_NAS_FUZZ_SECONDS", "10"))


def test_the_gate_survives_libfuzzer(tmp_path: Path) -> None:
    clang = shutil.which("clang")
    assert clang, "clang is missing: scripts/install --test installs it"
    binary = tmp_path / "fuzz_gate"
    subprocess.run([clang, "-g", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
                    str(GATE / "fuzz_gate.c"), "-o", str(binary), "-lpthread"],
                   check=True, capture_output=True, timeout=300)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run([str(binary), f"-max_total_time={SECONDS}", "-max_len=2048",
                           "-seed=1", str(corpus)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=SECONDS + 120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done" in done.stderr
