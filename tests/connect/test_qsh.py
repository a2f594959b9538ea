"""The qsh (Atlassian's canonical request, SHA-256 hex) against fixed expectations written out by hand from the
contract (§4), not computed with the library the add-on uses: `METHOD&path&query`, the path with `&` as `%26` and
no trailing `/` (empty → `/`), the query without `jwt`, keys sorted, keys and values percent-encoded (space as
`%20`), a blank value kept as `k=`, repeated values sorted and joined with `,`.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from addon.connect.jwt import query_string_hash

# (method, path, query string as sent) -> (canonical request, its SHA-256 hex)
CASES = {
    "repeated values sorted and joined with ,": (
        ("GET", "/api/webhooks", "b=2&a=z&a=x&a=y"),
        "GET&/api/webhooks&a=x,y,z&b=2",
        "0f007e3dde521ab01faa6abcce7a3f442ac4fcab93571bc2dd7ce3b35639780c"),
    "& in the path as %26, trailing / dropped": (
        ("GET", "/a&b/c/", ""),
        "GET&/a%26b/c&",
        "86f821df27a1426fe3b4b50498df15ea9edbc8d67ee75b2395be698e319b6916"),
    "trailing / dropped": (
        ("GET", "/api/webhooks/", ""),
        "GET&/api/webhooks&",
        "d338de273551a17a981913c35a7c8234d5e0b49c35054153a87be9883aa02579"),
    "empty path is /": (
        ("GET", "", ""),
        "GET&/&",
        "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239"),
    "space as %20": (
        ("GET", "/admin/webhooks", "q=a%20b"),
        "GET&/admin/webhooks&q=a%20b",
        "4c5d1bfa03fae02a3c29be7992c39f4dc226e01257a65bbca8b6623fa1073969"),
    "blank value kept as k=, keys sorted": (
        ("GET", "/admin/webhooks", "lic=none&cp="),
        "GET&/admin/webhooks&cp=&lic=none",
        "6296289acef95f44a4aee1104b39bd55bfa5b0433c4430d55350f06508791aa3"),
    "jwt left out": (
        ("GET", "/admin/webhooks", "jwt=eyJhbGciOi.x.y&lic=none&cp="),
        "GET&/admin/webhooks&cp=&lic=none",
        "6296289acef95f44a4aee1104b39bd55bfa5b0433c4430d55350f06508791aa3"),
    "values percent-encoded (RFC 3986)": (
        ("GET", "/admin/webhooks", "xdm_e=https%3A%2F%2Fsite.atlassian.net&lic=none"),
        "GET&/admin/webhooks&lic=none&xdm_e=https%3A%2F%2Fsite.atlassian.net",
        "ba3c66629bfc3952a01213daf0f57306759cabe550e05e33d914f28dee7fc188"),
    "a comma inside a value is encoded, the joining one is not": (
        ("GET", "/admin/webhooks", "a=c&a=a%2Cb"),
        "GET&/admin/webhooks&a=a%2Cb,c",
        "06c908d6b214f55345eef6d99c95b8e8929055ebe3dd9238516e7e9f1a2c0a1e"),
    "the signed install": (
        ("POST", "/lifecycle/installed", ""),
        "POST&/lifecycle/installed&",
        "efcb1cff0b1c68eeee0ccea2b4f9e37cc301805233fa3999e63643f28a2b4ac3"),
    "Atlassian's documented example": (
        ("GET", "/path/to/service", "zee_last=param&repeated=parameter%201&first=param&repeated=parameter%202"),
        "GET&/path/to/service&first=param&repeated=parameter%201,parameter%202&zee_last=param",
        "e52bb281606c3bd9ca16cfe96fe2df78f5d9ffa126f06befd750dfa10fa1a897"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_qsh_is_the_hash_of_the_canonical_request(case):
    (method, path, query), canonical, expected = CASES[case]
    assert hashlib.sha256(canonical.encode()).hexdigest() == expected  # the literal is the canonical's hash
    assert query_string_hash(method, path, query) == expected


# The same through the add-on: Jira's page load with these exact hashes in the token is let in.
PAGE_REQUESTS = {
    "GET&/admin/webhooks&a=x,y,z&b=2": (
        "/admin/webhooks?b=2&a=z&a=x&a=y", "e320e05aecdd3de1d3d1d91fe897a7878c2a05ecd4c1a5aaedf9f99843f0d888"),
    "GET&/admin/webhooks&k=&q=a%20b%2Cc": (
        "/admin/webhooks?q=a%20b%2Cc&k=", "7524f8d68728fc3056aceb833128a8a0884d6ba4608552a455a5b50cdd8b27b5"),
    "GET&/admin/webhooks&cp=&lic=none": (
        "/admin/webhooks?lic=none&cp=", "6296289acef95f44a4aee1104b39bd55bfa5b0433c4430d55350f06508791aa3"),
}


@pytest.mark.parametrize("canonical", list(PAGE_REQUESTS))
def test_a_page_load_signed_with_the_literal_qsh_is_accepted(addon, site, canonical):
    path, expected = PAGE_REQUESTS[canonical]
    assert hashlib.sha256(canonical.encode()).hexdigest() == expected
    token = site.token("GET", "/", qsh_value=expected)
    response = requests.get(f"{addon.url}{path}&jwt={token}", timeout=10)
    assert response.status_code == 200, response.text
    wrong = site.token("GET", "/", qsh_value=CASES["empty path is /"][2])
    assert requests.get(f"{addon.url}{path}&jwt={wrong}", timeout=10).status_code == 401
