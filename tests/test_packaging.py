"""The add-on as a wheel: built, installed into a fresh virtual environment (no access to this checkout or the
system's packages), and served from another directory. Slow (about a minute: a venv and its dependencies, from
pip's cache where it has them); it is the one test of a non-editable install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.forge_ui import build_forge_page
from tests.support.http import free_port
from tests.support.processes import AddonProcess, addon_env

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)


def _run(*args: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_NO_CACHE_DIR")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_wheel_installed_in_a_fresh_venv_serves_the_descriptor_page_and_static_files(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools builds in the source tree (build/), which is not ours to fill
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "instance", "tests",
                                                               "bench", "docs", "__pycache__", "node_modules",
                                                               "admin.js", "admin.css"))
    # the admin page's bundle is built, not committed: built into the copy's package, as before any wheel
    build_forge_page(tmp_path / "forge-admin", connect_out=source / "addon" / "admin" / "static")
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, source, cwd=tmp_path)
    [wheel] = wheels.glob("projectrak_outgoing_webhooks-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)  # without --system-site-packages
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed_at = _run(venv / "bin" / "python", "-c", "import addon; print(addon.__file__)", cwd=elsewhere)
    assert str(venv) in installed_at and str(REPO) not in installed_at
    package_data = _run(venv / "bin" / "python", "-c", "import importlib.resources as r; print(sorted(str(p) for p in "
                        "(r.files('addon.admin') / 'templates').iterdir()))", cwd=elsewhere)
    assert "admin_webhooks.html" in package_data  # the page's template, which only a signed request renders

    port = free_port()
    env = addon_env(DATABASE_URL=f"sqlite:///{tmp_path}/packaged.db")
    env.pop("PYTHONPATH", None)
    proc = AddonProcess(["serve", "--port", str(port), "--no-worker"], env, elsewhere, tmp_path / "serve.log",
                        executable=str(venv / "bin" / "addon"))
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_healthy(url)
        descriptor = requests.get(f"{url}/atlassian-connect.json", timeout=5)
        assert descriptor.status_code == 200
        assert descriptor.json()["baseUrl"] == f"http://localhost:{port}"
        assert descriptor.json()["lifecycle"]["installed"] == "/lifecycle/installed"
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        for static in ("admin.js", "admin.css"):
            assert requests.get(f"{url}/static/{static}", timeout=5).status_code == 200
        assert "Outgoing webhooks" in requests.get(f"{url}/static/admin.js", timeout=5).text  # the page's bundle
        page = requests.get(f"{url}/admin/webhooks", timeout=5)  # served to Jira's signed requests only
        assert page.status_code == 401 and page.json()["error"]["code"] == "unauthorized"
    finally:
        assert proc.stop() == 0
    assert "Traceback" not in proc.output()
