"""medmm: multimodal deep learning on biomedical images and text.

Importing this package is cheap on purpose: it pulls in no torch, no web server and no
dataset. Import the sub-package you need (``medmm.data``, ``medmm.metrics``, ...).
"""

__version__ = "0.1.0"
