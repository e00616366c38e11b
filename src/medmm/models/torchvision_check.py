"""Whether torchvision can be used beside this torch (Qwen2-VL's processor needs it).

`find_spec` is not enough: PyPI's torchvision wheels are built against CUDA torch, and installed
next to the CPU torch (`pip install --no-deps torchvision`) they are found but fail on import.
"""

from __future__ import annotations

import functools


@functools.cache
def torchvision_problem() -> str | None:
    """None when torchvision imports; else one sentence saying why it cannot be used."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return "torchvision is not installed"
    except RuntimeError as exc:  # e.g. "operator torchvision::nms does not exist": built for another torch
        return (f"torchvision is installed but does not load beside torch ({exc}); install the torchvision "
                "build made for this torch, or remove it")
    return None
