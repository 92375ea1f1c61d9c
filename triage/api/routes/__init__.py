"""HTTP routes, one module per resource family; ``app.py`` mounts them under ``/api/v1``."""
