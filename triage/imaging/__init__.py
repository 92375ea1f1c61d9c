"""imaging layer (see STYLE.md module map)."""
