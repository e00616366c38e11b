"""Serving a case's image to the browser: browser-native formats as they are, others as PNG."""

from __future__ import annotations

import io
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

BROWSER_IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def image_response(path: Path) -> Response:
    """Serve browser-native images as they are; convert others (TIFF, 16-bit PNG...) to PNG."""
    if path.suffix.lower() in BROWSER_IMAGE_TYPES:
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), media_type=media)
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGB") if im.mode in ("P", "CMYK") else to_8bit(im)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except OSError as exc:
        raise HTTPException(415, "image format cannot be shown") from exc
    return Response(buf.getvalue(), media_type="image/png")


def to_8bit(im: Any) -> Any:
    """Scale any numeric PIL image to 8-bit grey (min..max to 0..255)."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) * 255 if hi > lo else arr * 0
    return Image.fromarray(arr.astype(np.uint8))
