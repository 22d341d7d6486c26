"""Dataset builders: code that makes (or loads from installed packages) each chapter's data."""
