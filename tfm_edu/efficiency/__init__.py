"""Chapter 11 in code: what attention costs, and how to pay less."""
