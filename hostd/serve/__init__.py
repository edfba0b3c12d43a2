"""Serving: the composition root gunicorn calls (wsgi) and the worker class it runs (worker)."""
