"""A non-editable install into a fresh virtualenv ships the plugins and the script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging
ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_makes_the_twistd_plugins_and_script_appear(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("redesdl", "twisted"):
        shutil.copytree(
            ROOT / folder,
            source / folder,
            ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"),
        )
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    usage = subprocess.run(
        [str(environment / "bin" / "twistd"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "redesdl-central" in usage.stdout
    assert "redesdl-secondary" in usage.stdout
    version = subprocess.run(
        [str(environment / "bin" / "redesdl"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.startswith("redesdl ")
    records = list(
        (environment / "lib").glob("python3*/site-packages/redesdl-*.dist-info/RECORD")
    )
    assert len(records) == 1
    shipped = records[0].read_text()
    assert "twisted/plugins/redesdl_plugins.py" in shipped
    assert "twisted/__init__.py" not in shipped
    assert "twisted/plugins/__init__.py" not in shipped
    assert sys.version_info >= (3, 11)
