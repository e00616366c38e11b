"""Trained models as packages and as a web service (`medmm package`, `medmm serve`).

`make_package` (package.py) writes a self-contained, checksummed model package; `load_model`
(predictor.py) loads one as a `Predictor`; app.py is the FastAPI service with micro-batching
(batcher.py); inputs.py decodes uploads safely. Nothing here knows a task by name.
"""

from medmm.serve.package import make_package, verify_package
from medmm.serve.predictor import Predictor, load_model

__all__ = ["make_package", "verify_package", "load_model", "Predictor"]
