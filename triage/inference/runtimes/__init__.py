"""Runtime backends; each imports its heavy dependency locally (STYLE H12)."""
