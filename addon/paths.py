"""Where the add-on's own files live: always relative to the code, never the working directory."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DESCRIPTOR_TEMPLATE = PROJECT_DIR / "atlassian-connect.json"
TEMPLATES_DIR = PROJECT_DIR / "templates"
STATIC_DIR = PROJECT_DIR / "static"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
