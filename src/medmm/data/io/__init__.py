"""Reading images, text and tables from disk with errors that name the file.

`read_image` handles PNG, JPEG, TIFF and DICOM; `read_text`, `read_json`, `read_jsonl` and
`read_csv_rows` read UTF-8 text. Every failure is a `medmm.errors.BadInputError(path, problem)`.
"""

from medmm.data.io.dicom import DicomInfo, read_dicom, read_dicom_info
from medmm.data.io.image import IMAGE_SUFFIXES, apply_window, check_image_header, read_image, sniff_format
from medmm.data.io.mask import read_mask
from medmm.data.io.text import read_csv_rows, read_json, read_jsonl, read_text
from medmm.data.io.verify import verify_images, verify_samples

__all__ = [
    "IMAGE_SUFFIXES",
    "DicomInfo",
    "apply_window",
    "check_image_header",
    "read_csv_rows",
    "read_dicom",
    "read_dicom_info",
    "read_image",
    "read_json",
    "read_jsonl",
    "read_mask",
    "read_text",
    "sniff_format",
    "verify_images",
    "verify_samples",
]
