"""Explanations: Grad-CAM, attention, attributions, modality contributions, faithfulness."""
