"""core layer (see STYLE.md module map)."""
