"""HTTP edge (STYLE module map): worklist JSON API, STOW-RS intake, worklist page, health, metrics.

``app.create_app(ApiContext)`` builds the application; ``cli.py`` serves it with uvicorn.
"""
