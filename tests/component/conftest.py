"""Component tests use the in-process node app fixture from tests/apps.py (registered in tests/conftest.py)."""
