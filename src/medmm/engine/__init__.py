"""The one training engine (Lightning underneath), configs, run directories, checkpoints."""
