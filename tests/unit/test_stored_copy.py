"""mirror/stored.py: where Orthanc keeps an instance's file, read from its attachment info."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeOrthanc
from orthanc_nas.mirror.outbox import StoredCopy
from orthanc_nas.mirror.stored import stored_copy

UUID = "0a1b2c3d-0000-4000-8000-000000000001"
INFO = "/instances/i-1/attachments/dicom/info"


def test_an_uncompressed_attachment_is_a_file_in_orthancs_storage(tmp_path: Path) -> None:
    orthanc = FakeOrthanc({INFO: {"Uuid": UUID, "CompressedSize": 10, "UncompressedSize": 10,
                                  "UncompressedMD5": "abc"}})
    assert stored_copy(orthanc, tmp_path, "i-1") == StoredCopy(tmp_path / "0a" / "1b" / UUID,
                                                               "abc")


def test_compressed_or_odd_attachments_give_only_the_md5(tmp_path: Path) -> None:
    compressed = FakeOrthanc({INFO: {"Uuid": UUID, "CompressedSize": 5, "UncompressedSize": 10,
                                     "UncompressedMD5": "abc"}})
    assert stored_copy(compressed, tmp_path, "i-1") == StoredCopy(None, "abc")
    odd = FakeOrthanc({INFO: {"Uuid": "../../etc/passwd", "CompressedSize": 1,
                              "UncompressedSize": 1}})
    assert stored_copy(odd, tmp_path, "i-1") == StoredCopy(None, None)


def test_unknown_storage_or_instance_gives_nothing(tmp_path: Path) -> None:
    assert stored_copy(FakeOrthanc(), tmp_path, "gone") is None
    orthanc = FakeOrthanc()
    assert stored_copy(orthanc, None, "i-1") is None and orthanc.calls == []
