"""Intake: what comes in (Projectrak field changes, Jira project events) turned into outgoing events."""
