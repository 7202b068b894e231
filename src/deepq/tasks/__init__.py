"""Hydra entry points. Thin: they compose configs and call the library's plain functions."""
