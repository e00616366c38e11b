"""medmm: multimodal deep learning on biomedical images and text.

Importing this package is cheap on purpose: it pulls in no torch, no web server and no
dataset. Import the sub-package you need (``medmm.data``, ``medmm.metrics``, ...).
``medmm.load_model(DIR)`` (a model package, see ``medmm.serve``) is imported on first use.
"""

__version__ = "0.1.0"


def load_model(root):
    """Load a model package made by `medmm package` as a Predictor: ``load_model(DIR).predict(image=..., question=...)``."""
    from medmm.serve.predictor import load_model as _load

    return _load(root)
