"""Siyu: an open-source private-domain (私域) growth engine."""

__version__ = "0.1.0"
