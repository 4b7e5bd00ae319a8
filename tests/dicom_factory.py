"""Generates small, valid DICOM instances with pydicom for the tests and the benchmark."""

from __future__ import annotations

from array import array
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_instance(patient_id: str = "PAT-1", patient_name: str = "Doe^Jane",
                study_uid: str | None = None, series_uid: str | None = None,
                instance_number: int = 1, size: int = 64, modality: str = "CT",
                study_date: str = "20240105", description: str = "Test study") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyDescription = description
    ds.Modality = modality
    ds.InstanceNumber = instance_number
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = array("H", ((i * instance_number) % 4096 for i in range(size * size))).tobytes()
    return ds


def write_series(folder: Path, count: int, **kwargs: object) -> list[Path]:
    """``count`` instances of one series, written as files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for i in range(1, count + 1):
        ds = ct_instance(study_uid=study_uid, series_uid=series_uid, instance_number=i,
                         **kwargs)  # type: ignore[arg-type]
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
