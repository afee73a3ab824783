"""The application's own routes."""
