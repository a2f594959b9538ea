"""Turning field changes (Projectrak values, Jira project attributes) into outgoing payload fields."""
