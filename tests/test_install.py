"""A non-editable install finds its configs, glossaries, WLASL metadata and samples from anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_installed_wheel_runs_from_another_directory(tmp_path, tiny_model_dir):
    had_build = (ROOT / "build").exists()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, timeout=300)
    if not had_build:  # setuptools builds in the source tree: leave the checkout as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "wheel").glob("signlens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"assets/config/engine.yml", "assets/config/live.yml", "assets/config/dataset.yml",
            "assets/config/finetune.yml", "assets/glossaries/asl_core_320.txt", "assets/wlasl/WLASL_v0.3.json.gz",
            "assets/wlasl/nslt_100.json.gz", "assets/wlasl/C-UDA-1.0.pdf"} <= names

    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "SIGNLENS_MODEL": str(tiny_model_dir), "SIGNLENS_DEVICE": "cpu",
           "SIGNLENS_QUANTIZATION": "none", "SIGNLENS_DTYPE": "float32", "SIGNLENS_DATA": str(elsewhere / "data")}
    info = subprocess.run([sys.executable, "-m", "engine", "info"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert info.returncode == 0, info.stderr[-2000:]
    assert '"state": "ready"' in info.stdout and '"vocabulary_size": 320' in info.stdout
    # The app builds all its tabs (configs, glossaries, WLASL metadata, samples) from the installed copy.
    code = ("import engine, webapp.app, training.layout; "
            "from engine import Engine, load_config; "
            "webapp.app.build_app(Engine(load_config()), layout=training.layout.DataLayout.at()); "
            "print(engine.__file__)")
    app = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert app.returncode == 0, app.stderr[-2000:]
    assert app.stdout.strip().startswith(str(site))  # the installed copy, not the repository
