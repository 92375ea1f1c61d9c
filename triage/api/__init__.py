"""api layer (see STYLE.md module map)."""
