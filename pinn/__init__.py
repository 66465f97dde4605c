"""Physics-informed neural networks for the coupled benchmark systems (PyTorch)."""
