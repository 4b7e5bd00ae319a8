"""Orthanc's PythonScript: puts the venv and the plugin package first on sys.path, then starts."""

import os
import site
import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
_venv = Path(os.environ.get("ORTHANC_NAS_VENV", _here.parent / ".venv"))
_before = list(sys.path)
for _site in sorted(_venv.glob("lib/python3*/site-packages")):
    site.addsitedir(str(_site))  # also runs its .pth files
sys.path[:] = [str(_here)] + [p for p in sys.path if p not in _before] + _before

from orthanc_nas import adapter  # noqa: E402

adapter.start()
