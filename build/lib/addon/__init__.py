"""Projectrak Outgoing Webhooks: an Atlassian Connect add-on backend for Jira Cloud."""

__version__ = "0.1.0"
