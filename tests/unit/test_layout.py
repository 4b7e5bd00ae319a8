"""NAS layout: templates and the sanitization of hostile DICOM values."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthanc_nas.nas.layout import DEFAULT_TEMPLATE, LayoutError, check_template, render, sanitize
from orthanc_nas.nas.storage import (
    ConnectionFailed,
    LocalStorage,
    OutsideRoot,
    clean_relative,
    within,
)

VALUES = {"PatientID": "P1", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3",
          "SOPInstanceUID": "1.2.3.4"}


def test_default_layout() -> None:
    assert render(DEFAULT_TEMPLATE, VALUES) == "P1/1.2/1.2.3/1.2.3.4.dcm"


@pytest.mark.parametrize(("value", "expected"), [
    ("../../x", ".._.._x"), ("..", "_"), (".", "_"), ("", "_"), ("CON", "_CON"),
    ("nul.txt", "_nul.txt"), ("com1", "_com1"), ("LPT9.dcm", "_LPT9.dcm"), ("CONSOLE", "CONSOLE"),
    ("a\r\nb\x07", "a__b_"), ("C:\\Windows\\x", "C__Windows_x"), ('x<>:"|?*', "x_______"),
    ("trailing. . ", "trailing"), ("/abs", "_abs"), ("Doe^Jane", "Doe^Jane"),
])
def test_sanitize(value: str, expected: str) -> None:
    assert sanitize(value) == expected


def test_long_values_are_cut_but_stay_distinct() -> None:
    a, b = sanitize("a" * 300 + "1", 64), sanitize("a" * 300 + "2", 64)
    assert len(a.encode()) <= 64 and len(b.encode()) <= 64 and a != b
    multibyte = sanitize("é" * 200, 64)
    assert len(multibyte.encode()) <= 64
    multibyte.encode().decode()  # never cut inside a character


@pytest.mark.parametrize("hostile", ["../../etc", "..", "/", "\\..\\..", "CON", "x" * 500,
                                     "\x00", "a/b/c"])
def test_every_hostile_value_stays_one_component_under_the_root(hostile: str) -> None:
    path = render(DEFAULT_TEMPLATE, {**VALUES, "PatientID": hostile, "SOPInstanceUID": hostile})
    parts = path.split("/")
    assert len(parts) == 4
    assert all(p not in ("", ".", "..") and len(p.encode()) <= 255 for p in parts)
    assert parts[-1].endswith(".dcm")
    clean_relative(path)  # accepted as a path inside the root


@pytest.mark.parametrize(("template", "message"), [
    ("{PatientID}/{Nope}.dcm", "unknown field"),
    ("{PatientID}/x.dcm", "must contain {SOPInstanceUID}"),
    ("/{SOPInstanceUID}", "relative"),
    ("{SOPInstanceUID", "syntax"),
])
def test_bad_templates(template: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        check_template(template)


def test_local_storage_refuses_to_leave_its_root(tmp_path: pytest.TempPathFactory) -> None:
    root = tmp_path / "root"  # type: ignore[operator]
    root.mkdir()
    outside = tmp_path / "outside"  # type: ignore[operator]
    outside.mkdir()
    (root / "link").symlink_to(outside)
    storage = LocalStorage(str(root), [str(root)])
    with pytest.raises(OutsideRoot):
        storage.write("../escape.dcm", b"x")
    with pytest.raises(OutsideRoot):
        storage.write("link/escape.dcm", b"x")
    assert list(outside.iterdir()) == []
    storage.write("a/b.dcm", b"data")
    assert storage.read("a/b.dcm") == b"data"
    assert [e.name for e in storage.list("a")] == ["b.dcm"]


@pytest.mark.parametrize("template", ["{PatientID}.sh", "{PatientID}/{SOPInstanceUID}.sh",
                                      "../../{SOPInstanceUID}", "{SOPInstanceUID}.dcm.exe",
                                      "x/../{SOPInstanceUID}.DCM", "{SOPInstanceUID}"])
def test_every_file_name_ends_in_dcm_whatever_the_layout(template: str) -> None:
    """A layout an admin saved cannot make a script or any file but a .dcm (issue 11)."""
    path = render(template, {**VALUES, "PatientID": "run.sh"})
    assert path.endswith(".dcm")
    assert not any(p in ("", ".", "..") for p in path.split("/"))
    clean_relative(path)


def test_local_storage_refuses_a_root_outside_the_allowed_ones(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "share").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    assert within(str(allowed / "share"), [str(allowed)])
    assert within(str(allowed), [str(allowed)])
    assert not within(str(allowed / "escape"), [str(allowed)])  # symlinks resolved
    assert not within("/", [str(allowed)])
    assert not within(str(allowed / ".." / "outside"), [str(allowed)])
    assert not within("share", [str(allowed)])  # relative: refused
    assert not within(str(allowed), [])
    for root in ("", "/", str(allowed / "escape")):
        storage = LocalStorage(root, [str(allowed)])
        with pytest.raises(ConnectionFailed):
            storage.connect()
        with pytest.raises(ConnectionFailed):
            storage.write("x.dcm", b"x")
    assert list(outside.iterdir()) == []


def test_local_storage_checks_its_root_again_at_write_time(tmp_path: Path) -> None:
    """A folder swapped for a symlink after the settings were saved is caught when writing."""
    allowed = tmp_path / "allowed"
    share = allowed / "share"
    share.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = LocalStorage(str(share), [str(allowed)])
    storage.connect()
    storage.write("a.dcm", b"x")
    share.rename(allowed / "old")
    share.symlink_to(outside)
    with pytest.raises(ConnectionFailed):
        storage.write("b.dcm", b"x")
    assert list(outside.iterdir()) == []


def test_local_listing_shows_links_as_themselves(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_bytes(b"x" * 1000)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(secret / "shadow")
    (root / "dirlink").symlink_to(secret)
    storage = LocalStorage(str(root), [str(root)])
    entries = {e.name: e for e in storage.list("")}
    assert entries["link"].size != 1000 and not entries["dirlink"].is_dir
    with pytest.raises(OutsideRoot):
        storage.list("dirlink")
