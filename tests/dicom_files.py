"""Real DICOM Part 10 files written with pydicom, and pydicom's own shipped example files.

Tests compute the expected pixel values from the stored values with the DICOM formulas
written out here, independently of qtool's pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def example(name: str) -> Path:
    """One of the example files shipped inside the pydicom wheel (never downloaded)."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    assert found is not None, f"pydicom does not ship {name}"
    return Path(found)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes,
) -> Path:
    """A secondary-capture DICOM file holding `pixels` ((R,C), (F,R,C) or (..., 3) for RGB)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    uid = attributes.pop("SOPInstanceUID", None) or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid
    ds.Modality = "OT"
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(
        pixels,
        photometric_interpretation=photometric,
        bits_stored=bits,
        generate_instance_uid=False,
    )
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), mapped onto [0, 1]."""
    c, w = center - 0.5, width - 1.0
    out = (values - c) / w + 0.5
    out = np.where(values <= c - w / 2, 0.0, out)
    return np.where(values > c + w / 2, 1.0, out)
