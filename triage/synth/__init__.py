"""synth layer (see STYLE.md module map)."""
