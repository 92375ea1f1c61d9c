"""dicom layer (see STYLE.md module map)."""
