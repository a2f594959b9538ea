"""Outgoing webhook delivery.

The I/O-level pieces live here, one job per module:

- `addresses`: which URLs may be saved and which IP addresses may be connected to (the SSRF policy);
- `signing`: Standard Webhooks secrets, message ids and signature headers;
- `sender`: one HTTPS attempt over a resolved, checked and pinned address, bounded in wall-clock time;
- `retry`: the retry schedule and the rules deciding whether and when to try again.

The outbox and the worker that drive them sit on top of this API.
"""
