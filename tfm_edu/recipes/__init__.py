"""Training recipes behind `python -m tfm_edu.train <name>`, one module per model."""
