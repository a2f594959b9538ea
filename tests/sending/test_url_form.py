"""A webhook URL is saved in the form that is sent (CONTRACT §6.3): its host in IDNA form, its path and query
percent-encoded, without a fragment; a URL that cannot be sent is 400 at save."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from addon.sending.addresses import UrlRejected, check_url_for_saving, parse_target
from addon.storage.models import Webhook
from tests.support.admin import AdminClient


@pytest.mark.parametrize(("given", "saved"), [
    ("https://example.com/é", "https://example.com/%C3%A9"),
    ("https://bücher.example/straße?q=größe&x=ü", "https://xn--bcher-kva.example/stra%C3%9Fe?q=gr%C3%B6%C3%9Fe&x=%C3%BC"),
    ("https://BÜCHER.Example.:8443/", "https://xn--bcher-kva.example:8443/"),
    ("https://hooks.example.com/a b?c d=e f", "https://hooks.example.com/a%20b?c%20d=e%20f"),
    # already-encoded sequences are kept as they are (their hex case too); a lone % is encoded
    ("https://hooks.example.com/a%2Fb%c3%a9?x=%26&y=100%", "https://hooks.example.com/a%2Fb%c3%a9?x=%26&y=100%25"),
    # the fragment is never sent, so it is not saved
    ("https://hooks.example.com/in#section", "https://hooks.example.com/in"),
    ("https://hooks.example.com/in?a=1#", "https://hooks.example.com/in?a=1"),
    ("https://hooks.example.com", "https://hooks.example.com/"),
    ("https://hooks.example.com/in?", "https://hooks.example.com/in"),
    ("https://hooks.example.com:443/x", "https://hooks.example.com/x"),
    ("https://[2606:4700:4700::1111]:8443/a\"<>`{}|^", "https://[2606:4700:4700::1111]:8443/a%22%3C%3E%60%7B%7D%7C%5E"),
    # what is already in the form that is sent stays as it is
    ("https://hooks.example.com/a/b;c=d/e:f@g!$&'()*+,=~?k=v&l=/?:@", "https://hooks.example.com/a/b;c=d/e:f@g!$&'()*+,=~?k=v&l=/?:@"),
])
def test_a_url_is_saved_in_the_form_that_is_sent(given: str, saved: str) -> None:
    assert check_url_for_saving(given, allow_private=True) == saved
    assert check_url_for_saving(saved, allow_private=True) == saved  # saving it again changes nothing
    target = parse_target(given)
    assert target.url == saved
    assert saved.endswith(target.request_target) and target.request_target.isascii()


@pytest.mark.parametrize(("url", "why"), [
    ("https://example.com/\ud800", "cannot be encoded"),
    ("https://exa\ud800mple.com/", "not a valid domain name"),
    ("https://example.com/a\tb", "control characters"),
    ("https://hooks example.com/", "not a valid domain name"),
    ("https://example.com/" + "é" * 700, "longer than 2048 characters"),  # 700 characters, 4,200 once encoded
])
def test_a_url_that_cannot_be_sent_is_refused(url: str, why: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url_for_saving(url, allow_private=True)
    assert caught.value.code == "invalid_url" and why in caught.value.message


def test_post_and_patch_save_the_form_that_is_sent(addon, site) -> None:
    admin = AdminClient(addon.url, site)
    created = admin.create("Accents", "https://example.com/é#top")
    assert created["url"] == "https://example.com/%C3%A9"
    patched = admin.request("PATCH", f"/api/webhooks/{created['id']}", {"url": "https://bücher.example/ä?q=ü"})
    assert patched.status_code == 200 and patched.json()["url"] == "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"
    with addon.sessions() as session:
        assert session.scalars(select(Webhook.url)).one() == "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"

    for method, path in (("POST", "/api/webhooks"), ("PATCH", f"/api/webhooks/{created['id']}")):
        refused = admin.request(method, path, {"name": "Bad", "url": "https://example.com/a\tb"})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "invalid_url" and error["message"].startswith("url: ")
        # A lone surrogate is refused before any URL rule, as in every string of every route (CONTRACT §5).
        refused = admin.request(method, path, {"name": "Bad", "url": "https://example.com/\ud800"})
        assert refused.status_code == 422 and refused.json()["error"]["message"].startswith("url: ")


def test_a_non_ascii_path_or_a_space_is_delivered_percent_encoded(hooked_receiver) -> None:
    addon, admin, receiver = hooked_receiver
    receiver.behave("/caf%C3%A9%20x", status=200)
    created = admin.create("Café", receiver.url("/café x?q=ü"))
    assert created["url"] == receiver.url("/caf%C3%A9%20x?q=%C3%BC")
    answer = admin.request("POST", f"/api/webhooks/{created['id']}/test")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "OK"
    assert [r.path for r in receiver.wait_for(1, path="/caf%C3%A9%20x?q=%C3%BC")] == ["/caf%C3%A9%20x?q=%C3%BC"]


@pytest.fixture
def hooked_receiver(atlassian, sqlite_url, receiver):
    from tests.conftest import make_settings
    from tests.support.addon_server import AddonServer

    server = AddonServer(make_settings(atlassian, sqlite_url, ca_bundle=receiver.ca_path), background=False)
    site = atlassian.new_site()
    site.admins.add("admin-account")
    site.add_project(10000, "DEMO", "Demo project")
    assert site.install(server.url).status_code == 204
    yield server, AdminClient(server.url, site), receiver
    server.stop()
