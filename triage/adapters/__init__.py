"""adapters layer (see STYLE.md module map)."""
