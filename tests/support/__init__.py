"""Test support: a fake Atlassian (install keys, Jira REST, signed calls) and the add-on served over real HTTP."""
