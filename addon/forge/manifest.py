"""The Forge app's manifest (CONTRACT.md section 9.2), rendered from the template shipped inside the package.

The template lives in the package (not the repository's `forge/`), so `addon forge manifest` works from a wheel too.
It is valid YAML with two quoted placeholders; each is replaced by its value as a JSON string (a valid YAML
double-quoted scalar), so no value can change the YAML around it, and the template's comments are kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from addon.config import ConfigError, load_settings

TEMPLATE = Path(__file__).resolve().with_name("manifest.template.yml")
# Where `--write` puts it: `forge/` under the working directory, i.e. the repository's when run at its root,
# next to the Custom UI build (`forge/static/admin`) the manifest's resource names.
OUTPUT = Path("forge") / "manifest.yml"
# The values of the example manifest kept in the repository at forge/manifest.yml.
EXAMPLE_APP_ID = "ari:cloud:ecosystem::app/00000000-0000-0000-0000-000000000000"
EXAMPLE_BASE_URL = "https://your-tunnel.ngrok-free.app"

def check_app_id(app_id: str | None) -> str:
    """The app id is required here (the settings check its form)."""
    if not app_id:
        raise ConfigError("FORGE_APP_ID is not set: give it the app id `forge register` prints "
                          "(ari:cloud:ecosystem::app/<uuid>)")
    return app_id


def check_base_url(base_url: str) -> str:
    """Forge calls a remote over HTTPS only: the base URL must be the public https:// one (an ngrok URL in
    development)."""
    if urlsplit(base_url).scheme != "https":
        raise ConfigError(f"ADDON_BASE_URL must be the public https:// URL Forge reaches the add-on at "
                          f"(e.g. the one `ngrok http 8000` prints), not {base_url!r}")
    return base_url.rstrip("/")


def render(app_id: str, base_url: str) -> str:
    """The manifest with `app.id` = app_id and the remote's `baseUrl` = base_url."""
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in (("FORGE_APP_ID", check_app_id(app_id)), ("ADDON_BASE_URL", check_base_url(base_url))):
        placeholder = f'"{{{{ {name} }}}}"'
        if text.count(placeholder) != 1:  # a broken template is a packaging bug, not a user's mistake
            raise RuntimeError(f"{TEMPLATE} must hold {placeholder} exactly once")
        text = text.replace(placeholder, json.dumps(value))
    return text


def manifest_command(write: bool) -> int:
    """`addon forge manifest [--write]`: print the manifest, or write it to ./forge/manifest.yml."""
    try:
        settings = load_settings()
        text = render(settings.forge_app_id or "", settings.base_url)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    if not write:
        sys.stdout.write(text)
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.resolve()}", file=sys.stderr)
    return 0
