"""The example FastAPI application: run it with ``uvicorn examples.fastapi_app.main:app``."""
