"""Sending one attempt: the address policy (SSRF), the pinned HTTPS client, Standard Webhooks signing."""
