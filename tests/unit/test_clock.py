"""The test clock: the offset file is honoured at every read."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orthanc_nas.clock import OffsetClock


def test_offset_clock_sees_every_write_even_same_size_ones(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = OffsetClock(path)
    for offset in ("960.0", "990.0", "120.0"):
        path.write_text(offset)
        os.utime(path, ns=(0, 0))  # same size and mtime: writes within one coarse clock tick
        assert abs(clock.now() - (time.time() + float(offset))) < 1


def test_offset_clock_falls_back_to_the_wall_clock(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    assert abs(OffsetClock(path).now() - time.time()) < 1  # no file
    path.write_text("not a number")
    assert abs(OffsetClock(path).now() - time.time()) < 1
