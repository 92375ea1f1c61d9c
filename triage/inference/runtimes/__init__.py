"""inference/runtimes layer (see STYLE.md module map)."""
