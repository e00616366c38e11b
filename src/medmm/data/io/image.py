"""`read_image`: PNG, JPEG, TIFF and DICOM to a numpy array, fully decoded at read time.

Formats are recognised by their magic bytes first and the file suffix second, so a PNG saved
as ``.jpg`` still reads and random bytes named ``.dcm`` give a clear error. Images are decoded
completely (PIL ``load()``), so a truncated file fails here with its name rather than later
inside a data loader worker.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medmm.data.io.guard import J2K_SOC_SIZ, JP2_SIGNATURE, check_jpeg2000, guarded
from medmm.errors import BadInputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".bmp"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
# PIL modes mapped to the mode we return; alpha is dropped because no task here uses it.
_PIL_MODE_MAP = {
    "1": "L",
    "LA": "L",
    "La": "L",
    "P": "RGB",
    "PA": "RGB",
    "RGBA": "RGB",
    "RGBa": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def sniff_format(head: bytes) -> str | None:
    """Name the image format from a file's first bytes ("png", "jpeg", "tiff", "dicom"), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith((JP2_SIGNATURE, J2K_SOC_SIZ)):
        return "jpeg2000"
    if head.startswith(b"BM"):
        return "bmp"
    return None


def check_image_header(path: str | Path) -> str:
    """The format of an image file from its first bytes, without decoding it (cheap).

    A raw DICOM dataset (no preamble) named .dcm/.dicom passes as "dicom"; its header is
    parsed when it is read. Missing, empty or unrecognised files (a text file named .jpg)
    raise BadInputError naming the file.
    """
    path = Path(path)
    head = _read_head(path)
    fmt = sniff_format(head)
    if fmt is None and path.suffix.lower() in _DICOM_SUFFIXES:
        return "dicom"
    if fmt is None:
        raise BadInputError(path, f"not a recognised image format (first bytes {head[:8]!r}; expected PNG, JPEG, TIFF or DICOM)")
    return fmt


def _read_head(path: Path) -> bytes:
    if not path.exists():
        if path.is_symlink():
            raise BadInputError(path, "image file not found (a broken or self-referencing symlink)")
        raise BadInputError(path, "image file not found")
    if not path.is_file():
        raise BadInputError(path, "image path is not a regular file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise BadInputError(path, f"cannot read image file: {exc.strerror or exc}") from exc
    if not head:
        raise BadInputError(path, "image file is empty (0 bytes)")
    return head


def apply_window(arr: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI window (DICOM PS3.3 C.11.2.1.2) mapping values to float32 in [0, 1].

    Values below ``center - width/2`` become 0, above ``center + width/2`` become 1.
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    lo = center - 0.5 - (width - 1) / 2
    out = (np.asarray(arr, dtype=np.float64) - lo) / max(width - 1, 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def read_image(
    path: str | Path, *, window: tuple[float, float] | None = None, stored_window: bool = True
) -> np.ndarray:
    """Read an image file as (H, W) or (H, W, C) numpy array.

    PNG/JPEG/BMP keep their integer dtype (uint8, or uint16 for 16-bit PNG); alpha channels
    and palettes become plain RGB. TIFF is read with tifffile (any dtype, one page). DICOM
    gets RescaleSlope/Intercept applied (float32, e.g. Hounsfield units), the stored
    WindowCenter/Width or the explicit ``window=(center, width)`` applied (float32 in
    [0, 1]; ``stored_window=False`` keeps the rescaled values instead), and MONOCHROME1
    inverted so that bright always means dense.

    An explicit ``window`` is applied to grayscale images of any format.
    Any unreadable, truncated or unrecognised file raises `BadInputError` naming it.
    """
    path = Path(path)
    head = _read_head(path)
    fmt = sniff_format(head)
    suffix = path.suffix.lower()
    if fmt == "dicom" or (fmt is None and suffix in _DICOM_SUFFIXES):
        from medmm.data.io.dicom import read_dicom

        return read_dicom(path, window=window, stored_window=stored_window, force=fmt is None)
    if fmt == "tiff":
        arr = guarded(lambda: _read_tiff(path), path, "decoding the TIFF")
    else:
        if fmt == "jpeg2000":
            check_jpeg2000(path.read_bytes(), path)
        arr = guarded(lambda: _read_pil(path), path, "decoding the image")
    if arr.dtype.kind == "f":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise BadInputError(path, f"{bad} of {arr.size} pixel values are NaN or infinite")
    if window is not None:
        if arr.ndim != 2:
            raise ValueError(f"{path}: a window applies to grayscale images, this one has shape {arr.shape}")
        arr = apply_window(arr, *window)
    return arr


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    # Some libraries set LOAD_TRUNCATED_IMAGES globally; a truncated file must still fail here.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                # Phone photos (pathology, dermatology) store their rotation in EXIF.
                im = ImageOps.exif_transpose(im)
                target = _PIL_MODE_MAP.get(im.mode)
                if target is not None:
                    im = im.convert(target)
                arr = np.array(im)
    except UnidentifiedImageError as exc:
        raise BadInputError(path, "not a recognised image format (expected PNG, JPEG, TIFF or DICOM)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(path, f"image is implausibly large: {exc}") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for corrupt files
        raise BadInputError(path, f"corrupt or truncated image: {exc}") from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise BadInputError(path, f"decoded to an unusable array of shape {arr.shape}")
    return arr


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            if len(pages) == 0:
                raise BadInputError(path, "TIFF holds no image pages")
            if len(pages) > 1:
                raise BadInputError(
                    path, f"multi-page TIFF ({len(pages)} pages); read_image expects one 2-D image per file"
                )
            page = pages[0]
            arr = page.asarray()
            axes = page.axes
    except BadInputError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ... on corrupt input
        raise BadInputError(path, f"corrupt or truncated TIFF: {exc}") from exc
    if "S" in axes and axes.index("S") == 0 and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) storage -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise BadInputError(path, f"TIFF decoded to shape {arr.shape} (axes {axes}); expected (H, W) or (H, W, C)")
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha, as for PNG
    return np.ascontiguousarray(arr)
