"""Dataspace4Health: a health data space node."""

__version__ = "0.1.0"
