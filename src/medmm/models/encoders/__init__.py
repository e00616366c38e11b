"""Image and text encoders behind one interface (see base.py)."""
