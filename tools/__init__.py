"""Maintenance scripts; not part of the deployed program."""
