"""Models: encoders, fusion blocks, heads and the model registry. Knows no task or training loop."""
