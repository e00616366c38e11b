"""Task heads."""
