"""Administration: the Outgoing webhooks page shown in Jira, and the JSON API it uses."""
