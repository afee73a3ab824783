"""Runnable examples; the FastAPI example app is the package ``examples.fastapi_app``."""
