"""Fusion blocks, registered by name."""
