"""inference layer (see STYLE.md module map)."""
