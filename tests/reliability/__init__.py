"""Reliability scenarios (issue 7): load, process kills, a database restart, receiver outages, hostile input and
secrets. Each scenario appends its figures as one JSON line to `test-artifacts/reliability.jsonl`; see
`docs/reliability.md`."""
