"""Layer 0: errors, time <-> sample conversions, atomic writes and list parsing. Imports nothing of dcat."""
