"""A missing module stops start-up with an import error; it never silently turns a route off."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "addon"

START = ("from addon.app import create_app; from addon.config import Settings; "
         "app = create_app(Settings(database_url='sqlite:///start.db')); "
         "print(sorted(rule.rule for rule in app.url_map.iter_rules()))")


@pytest.mark.parametrize("module", ["intake/routes.py", "admin/api.py", "admin/page.py"])
def test_a_missing_blueprint_module_is_an_import_error_at_start_up(tmp_path, module):
    copy = tmp_path / "addon"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / module).unlink()  # as if it were renamed or deleted
    started = subprocess.run([sys.executable, "-c", START], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert started.returncode != 0, f"the app started without {module}: {started.stdout}"
    package, name = module.removesuffix(".py").split("/")
    assert f"ImportError: cannot import name '{name}' from 'addon.{package}'" in started.stderr
