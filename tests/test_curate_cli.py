"""`python -m training.curate`: help with runnable examples, and a real build in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from curation_data import EXPECTED, make_fake_wlasl
from training.layout import DataLayout
from training.curate import __main__ as curate

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.curate", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=120)


def test_help_shows_runnable_examples():
    result = run("--help")
    assert result.returncode == 0
    for command in ("ingest", "download", "build", "stats", "export"):
        assert f"python -m training.curate {command}" in result.stdout
    # Every example parses with the real parser (so none of them is stale).
    for line in curate.EXAMPLES.strip().splitlines():
        argv = line.split("python -m training.curate", 1)[1].split()
        curate._parser().parse_args(argv)


def test_build_in_a_subprocess_then_stats_and_export(tmp_path, capsys):
    data = tmp_path / "data"
    metadata, _ = make_fake_wlasl(tmp_path, data)
    common = ["--data", str(data), "--metadata", str(metadata), "--subset", "WLASL100"]
    build = run("build", *common, "--name", "cli", "--frames", "4")
    assert build.returncode == 0, build.stderr
    assert "4 clips written" in build.stdout and "skipped wlasl:65539" in build.stdout
    folder = DataLayout.at(data).datasets / "cli"
    rows = [json.loads(line) for line in (folder / "dataset.jsonl").read_text().splitlines()]
    assert {row["video_id"] for row in rows} == set(EXPECTED)
    assert json.loads((folder / "config.json").read_text())["dataset"]["frames_per_clip"] == 4

    # The other commands in-process: a subprocess each would mostly time `import torch`.
    assert curate.main(["ingest", *common]) == 0
    assert "6 WLASL clips (5 downloaded, 0 excluded)" in capsys.readouterr().out
    assert curate.main(["stats", "cli", "--data", str(data), "--png", str(tmp_path / "s.png")]) == 0
    assert "4 clips, 3 glosses" in capsys.readouterr().out
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert curate.main(["build", "--data", str(data), "--config", str(folder / "config.json"), "--name", "again"]) == 0
    assert "4 from the cache" in capsys.readouterr().out  # the resolved config rebuilds the same clips
    assert curate.main(["export", "cli", "--data", str(data)]) == 0
    assert capsys.readouterr().out.strip() == "exports/cli.zip"  # relative to the data root: no server paths


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert curate.main(["build", "--data", str(tmp_path), "--subset", "WLASL100", "--name", "../escape"]) == 2
    assert capsys.readouterr().err.startswith("error: The dataset name '../escape' is not valid: use letters")
    assert curate.main(["stats", "missing", "--data", str(tmp_path)]) == 2
    assert "There is no built dataset named missing" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("nmae: x\n")
    assert curate.main(["ingest", "--config", str(bad), "--data", str(tmp_path)]) == 2
    assert "unknown key(s) nmae" in capsys.readouterr().err


def test_curation_verbs_edit_what_the_build_takes(tmp_path, capsys):
    data = tmp_path / "data"
    metadata, _ = make_fake_wlasl(tmp_path, data)
    common = ["--data", str(data)]
    # The edit verbs read the shipped metadata: 69241 is WLASL's "book".
    assert curate.main(["relabel", "wlasl:69241", "drink", *common]) == 0
    assert capsys.readouterr().out.strip() == "wlasl:69241 is now labelled drink."
    assert curate.main(["exclude", "wlasl:65225", *common]) == 0
    selection = ["--metadata", str(metadata), "--subset", "WLASL100", *common]
    assert curate.main(["ingest", *selection]) == 0
    assert "6 WLASL clips (5 downloaded, 1 excluded)" in capsys.readouterr().out
    assert curate.main(["restore", "wlasl:65225", *common]) == 0
    assert curate.main(["ingest", *selection]) == 0
    assert "(5 downloaded, 0 excluded)" in capsys.readouterr().out
    assert curate.main(["accept", "wlasl:65225", *common]) == 2
    assert capsys.readouterr().err == "error: WLASL clips need no review; accept is for your own clips.\n"
    assert curate.main(["relabel", "wlasl:../../etc", "x", *common]) == 2
    assert curate.main(["relabel", "wlasl:69241", "bad\ngloss", *common]) == 2
    assert "characters a gloss cannot have" in capsys.readouterr().err


def _one_sentence(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_bad_download_settings_are_one_sentence(tmp_path):
    data = ["--data", str(tmp_path / "data")]
    assert "workers must be at least 1, not 0" in _one_sentence(run("download", "--workers", "0", *data))
    assert "timeout_s must be more than 0 seconds, not 0.0" in _one_sentence(run("download", "--timeout", "0", *data))


def test_a_damaged_dataset_file_is_named_with_its_line(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    folder = layout.datasets / "broken"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": "broken", "glossary": ""}))
    row = {"clip": "clips/a.mp4", "gloss": "book", "split": "train"}
    (folder / "dataset.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row)[:20] + "\n")  # cut by a full disk
    stderr = _one_sentence(run("stats", "broken", "--data", str(layout.root)))
    assert stderr == "error: Line 2 of the dataset broken (dataset.jsonl) is damaged; rebuild the dataset.\n"


def test_a_folder_name_too_long_for_the_filesystem_is_one_sentence(tmp_path):
    stderr = _one_sentence(run("import", str(tmp_path / ("v" * 300)), "--data", str(tmp_path / "data")))
    assert stderr == f"error: There is no folder {'v' * 40}... to import from.\n"


def test_malformed_metadata_is_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"not": "a list"}')
    result = run("ingest", "--metadata", str(bad), "--data", str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr == "error: The WLASL metadata file broken.json is not WLASL v0.3: it holds a dict, not a list of gloss entries.\n"
