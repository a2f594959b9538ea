"""Atlassian Connect: descriptor, lifecycle, JWT, and the REST client signed as the app."""
