"""Loaders for public datasets, one module each, in their original layouts."""
