"""The benchmark runs end to end at tiny sizes and records every figure (goals not asserted:
a smoke run is far too small for them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness import PLATFORM, REPO

FIGURES = set(range(1, 13))  # every figure scripts/bench defines


def test_bench_smoke_records_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    done = subprocess.run([str(REPO / "scripts" / "bench"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] is True and result["smoke"] is True
    rows = result["figures"]
    assert {r["number"] for r in rows} == FIGURES
    for row in rows:
        assert row["plugin"] and all(v > 0 for v in row["plugin"]), row
        assert row["plugin_median"] > 0, row
        if not row["plugin_only"]:
            assert row["vanilla"] and all(v > 0 for v in row["vanilla"]), row
            assert row["vanilla_median"] > 0 and row["value"] is not None, row
    assert result["machine"]["nproc"] >= 1 and result["date"]
    assert result["platform"] == PLATFORM.name  # ORTHANC_NAS_PLATFORM: this machine or a root
    assert result["versions"]["orthanc"] == PLATFORM.orthanc_version()
    assert "| figure" in done.stdout and "met?" in done.stdout
