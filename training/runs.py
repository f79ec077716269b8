"""Fine-tuning runs as background processes: launch, watch, cancel, resume, evaluate, list.

The web app must keep serving while a run trains for hours, and a trainer that dies (out
of memory, a CUDA error) must not take the server with it; so each run is its own
`python -m training.finetune` process and each evaluation its own `python -m
training.evaluate`. This module only spawns those processes and reads the files they
write (run folder layout: training/finetune.py); it never imports torch or transformers.

    manager = RunManager(default_runs_root(), data_root, engine_config=engine.config)
    name = manager.launch("wlasl100", overrides={"max_steps": 100})
    manager.job()             # what runs now (or ran last): kind, run, state, message
    manager.cancel()          # touch CANCEL; terminated if it has not stopped in time
    manager.resume(name)      # --resume from the run's last checkpoint
    manager.evaluate(name)    # report.md / report.json / confusion_*.png in the run folder
    manager.runs()            # every run folder with its state and metrics, newest first

One process at a time, training or evaluation (each loads its own copy of the model):
another launch raises `RunBusy`. The children get the serving engine's model settings
as SIGNLENS_* variables, so a run trains the model the app serves. Besides what the
trainer writes, a run folder holds process.log (the trainer's stdout and stderr),
eval.log (the evaluator's) and process.json (pid, command, start time of the last one).
Children run in their own session: restarting the server does not kill a run, and the
next server finds it by its pid (one at a time still holds, and Cancel still works).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.dataset import list_datasets
from training.atomic import write_json
from training.finetune import read_losses
from training.finetune_config import FinetuneConfigError, load_finetune_config

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"train": "training.finetune", "eval": "training.evaluate"}
LOGS = {"train": "process.log", "eval": "eval.log"}
# Letters, digits, ".", "_", "-"; no leading dot, so never ".", ".." or a hidden folder
# (the trainer stages adapters in ".adapter.*").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The trainer stops at the end of the step after CANCEL appears and saves a checkpoint;
# a step of a 2B model on a CPU can take minutes, so wait this long before terminating.
CANCEL_TIMEOUT_S = 180.0
# After SIGTERM, how long before SIGKILL.
KILL_GRACE_S = 10.0
ACTIVE = ("starting", "running")


class RunError(ValueError):
    """A request about runs that cannot be done; the message is one sentence for the user."""


class RunBusy(RunError):
    """A training or evaluation process is already running."""


def default_runs_root() -> Path:
    return Path(os.environ.get("SIGNLENS_RUNS") or ROOT / "runs").resolve()


def check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise RunError(f"{name!r} is not a run name: use letters, digits, '.', '_' and '-', starting with a letter or digit.")
    return name


def engine_env(engine_config: Any) -> dict[str, str]:
    """The SIGNLENS_* variables that make a child load the model this engine config serves."""
    if engine_config is None:
        return {}
    model = engine_config.model
    # A local model folder relative to the server's cwd must still be found from the child's.
    model_id = str(Path(model.id).resolve()) if Path(model.id).exists() else model.id
    return {
        "SIGNLENS_MODEL": model_id,
        "SIGNLENS_REVISION": model.revision,
        "SIGNLENS_DEVICE": model.device,
        "SIGNLENS_DTYPE": model.dtype,
        "SIGNLENS_QUANTIZATION": model.quantization,
        "SIGNLENS_FRAMES": str(engine_config.video.frames_per_clip),
        "SIGNLENS_VOCABULARY": str(Path(engine_config.vocabulary_path()).resolve()),
        "SIGNLENS_MODE": engine_config.recognition.mode,
    }


@dataclass(frozen=True)
class RunInfo:
    name: str
    folder: Path
    # starting | running | cancelling | done | cancelled | failed | interrupted (its process
    # is gone without saying why) | unknown
    state: str
    dataset: str
    step: int
    max_steps: int
    # Unix time the run was (last) started, for sorting.
    started: float
    # adapter/ once training finished, else None.
    adapter: Path | None
    # The adapter's metrics.json: steps, train_loss, samples_per_second, train_seconds, ...
    metrics: dict[str, Any] = field(default_factory=dict)
    # From report.json when the adapter was evaluated: {"adapter": {...}, "base": {...}}.
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Why it failed or was stopped.
    message: str = ""


@dataclass(frozen=True)
class JobState:
    # "train" | "eval"; "" when nothing ran since this manager started.
    kind: str
    run: str
    # running | cancelling | done | cancelled | failed
    state: str
    returncode: int | None
    elapsed_s: float
    message: str

    @property
    def running(self) -> bool:
        return self.state in ("running", "cancelling")


@dataclass
class _Job:
    kind: str
    run: str
    folder: Path
    pid: int
    # None for a process another server started (found by its pid in process.json).
    process: subprocess.Popen | None
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    state: str = "running"
    returncode: int | None = None
    message: str = ""
    # monotonic time at which a cancelled process is terminated (then killed after a grace).
    deadline: float | None = None
    terminated: bool = False
    thread: threading.Thread | None = None


class RunManager:
    def __init__(self, runs_root: Path | None, data_root: Path, *, engine_config: Any = None,
                 cancel_timeout_s: float = CANCEL_TIMEOUT_S, python: str = sys.executable) -> None:
        self.runs_root = Path(runs_root or default_runs_root()).resolve()
        self.data_root = Path(data_root).resolve()
        self.engine_config = engine_config
        self.cancel_timeout_s = cancel_timeout_s
        self.python = python
        self._lock = threading.RLock()
        self._job: _Job | None = None
        self._scanned = 0.0

    # --- launching -------------------------------------------------------------------

    def launch(self, dataset: str, *, run_name: str = "", overrides: Mapping[str, Any] | None = None) -> str:
        """Start training `dataset` in the background; returns the run's name."""
        if not dataset or dataset not in list_datasets(self.data_root):
            raise RunError(f"There is no built dataset named {dataset!r}: build it in the Curate tab first.")
        name = check_name(run_name) if (run_name or "").strip() else \
            f"{dataset}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        fixed = {"dataset", "run_name", "output_dir"} & set(overrides or {})
        if fixed:
            raise RunError(f"{', '.join(sorted(fixed))} cannot be overridden here.")
        try:
            config = load_finetune_config(overrides={**(overrides or {}), "dataset": dataset})
        except FinetuneConfigError as exc:
            raise RunError(str(exc)) from None
        sets = [f"{key}={_text(getattr(config, key))}" for key in sorted(overrides or {})]
        with self._lock:
            self._ensure_idle()
            folder = self.runs_root / name
            if folder.exists():
                raise RunError(f"A run named {name} exists already: choose another name, or resume it.")
            folder.mkdir(parents=True)
            self._start("train", name, ["--dataset", dataset, "--run-name", name, "--set", f"output_dir={self.runs_root}",
                                        *[arg for pair in sets for arg in ("--set", pair)]])
        return name

    def resume(self, name: str) -> str:
        """Continue a cancelled, failed or interrupted run from its last checkpoint."""
        folder = self._folder(name)
        if not (folder / "finetune_config.json").is_file():
            raise RunError(f"The run {folder.name} never got as far as saving its settings; start a new run instead.")
        with self._lock:
            self._ensure_idle()
            state = self._info(folder).state
            if state == "done":
                raise RunError(f"The run {folder.name} has finished already; start a new run instead.")
            if state in (*ACTIVE, "cancelling"):  # e.g. a command-line run this app did not start
                raise RunBusy(f"The run {folder.name} still says it is {state}; wait for it, or stop it first.")
            (folder / "CANCEL").unlink(missing_ok=True)
            # The saved config says where the run lives; the folder may have moved since.
            self._start("train", folder.name, ["--config", str(folder / "finetune_config.json"), "--resume",
                                               "--run-name", folder.name, "--set", f"output_dir={self.runs_root}"])
        return folder.name

    def evaluate(self, name: str, *, dataset: str = "", split: str = "test") -> str:
        """Evaluate a run's adapter (and the base model) on its dataset; the report lands in the run folder."""
        adapter = self.adapter_path(name)
        dataset = dataset or str(_read_json(adapter.parent / "finetune_config.json").get("dataset", ""))
        if not dataset:
            raise RunError(f"The run {name} does not say which dataset it was trained on.")
        with self._lock:
            self._ensure_idle()
            self._start("eval", adapter.parent.name, ["--dataset", dataset, "--split", split, "--adapter", str(adapter)])
        return adapter.parent.name

    def cancel(self, *, timeout_s: float | None = None) -> str | None:
        """Stop the running process; returns its run name, or None when nothing runs.

        Training is asked first (CANCEL: it saves a checkpoint at the end of the step and
        exits) and terminated only if it has not stopped after `timeout_s`. A run still
        loading its model (the trainer would delete CANCEL before its first step) and an
        evaluation (nothing to save) are terminated at once.
        """
        with self._lock:
            job = self._current(force_scan=True)
            if job is None:
                return None
            if job.deadline is None:
                wait = 0.0
                if job.kind == "train":
                    (job.folder / "CANCEL").touch()
                    if _read_json(job.folder / "status.json").get("state") == "running":
                        wait = self.cancel_timeout_s if timeout_s is None else timeout_s
                job.deadline, job.state = time.monotonic() + wait, "cancelling"
            return job.run

    def wait(self, timeout: float | None = None) -> JobState:
        job = self._job
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.job()

    # --- reading ---------------------------------------------------------------------

    def job(self) -> JobState:
        with self._lock:
            self._current()
            job = self._job
            if job is None:
                return JobState("", "", "idle", None, 0.0, "")
            end = job.finished or time.monotonic()
            return JobState(job.kind, job.run, job.state, job.returncode, end - job.started, job.message)

    def runs(self) -> list[RunInfo]:
        """Every run folder, newest first."""
        if not self.runs_root.is_dir():
            return []
        folders = [p for p in self.runs_root.iterdir() if p.is_dir() and not p.is_symlink() and _NAME.fullmatch(p.name)
                   and any((p / f).is_file() for f in ("finetune_config.json", "process.json", "status.json"))]
        return sorted((self._info(p) for p in folders), key=lambda r: r.started, reverse=True)

    def run(self, name: str) -> RunInfo:
        folder = self._folder(name)
        if not folder.is_dir():
            raise RunError(f"There is no run named {folder.name}.")
        return self._info(folder)

    def adapter_path(self, name: str) -> Path:
        adapter = self._folder(name) / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise RunError(f"The run {check_name(name)} has no finished adapter.")
        return adapter

    def losses(self, name: str) -> list[tuple[int, float]]:
        """(step, loss) from train_log.jsonl; after a resume the repeated steps keep their latest value."""
        return read_losses(self._folder(name) / "train_log.jsonl")

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of the run's most recently written log (training or evaluation).

        Progress bars rewrite their line with carriage returns; only each line's last state is kept.
        """
        folder = self._folder(name)
        logs = [folder / f for f in LOGS.values() if (folder / f).is_file()]
        if not logs:
            return ""
        text = _read_text(max(logs, key=lambda p: p.stat().st_mtime), tail=64 * 1024)
        kept = [line.rstrip("\r").split("\r")[-1].rstrip() for line in text.split("\n")]
        return "\n".join([line for line in kept if line][-lines:])

    # --- internals -------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self.runs_root / check_name(name)

    def _ensure_idle(self) -> None:
        job = self._current(force_scan=True)
        if job is not None:
            what = "A training run" if job.kind == "train" else "An evaluation"
            raise RunBusy(f"{what} ({job.run}) is still running: one at a time, so cancel it or wait for it to finish.")

    def _current(self, *, force_scan: bool = False) -> _Job | None:
        """The live job, adopting one that another server process started (found by its pid)."""
        job = self._job
        if job is not None and job.finished == 0.0:
            return job
        if not force_scan and time.monotonic() - self._scanned < 5.0:
            return None
        self._scanned = time.monotonic()
        for folder in (self.runs_root.iterdir() if self.runs_root.is_dir() else ()):
            record = _read_json(folder / "process.json") if _NAME.fullmatch(folder.name) else {}
            kind, pid = record.get("kind"), record.get("pid")
            if kind in MODULES and isinstance(pid, int) and _pid_alive(pid, MODULES[kind]):
                job = _Job(kind, folder.name, folder, pid, None)
                if isinstance(record.get("started"), (int, float)):
                    job.started -= max(0.0, time.time() - record["started"])
                self._watch(job)
                log.info("found a running %s process (pid %d) for run %s", kind, pid, folder.name)
                return job
        return None

    def _start(self, kind: str, name: str, args: list[str]) -> None:
        folder = self.runs_root / name
        command = [self.python, "-m", MODULES[kind], *args]
        env = {key: value for key, value in os.environ.items() if key != "SIGNLENS_ADAPTER"}  # train the base model
        overrides = {**engine_env(self.engine_config), "SIGNLENS_DATA": str(self.data_root)}
        env.update(overrides, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        with open(folder / LOGS[kind], "a", encoding="utf-8") as handle:
            handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
            handle.flush()
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                       stderr=subprocess.STDOUT, **_own_session())
        write_json(folder / "process.json", {"kind": kind, "pid": process.pid, "command": command,
                                             "env": overrides, "started": time.time()})
        log.info("started %s of %s (pid %d)", kind, name, process.pid)
        self._watch(_Job(kind, name, folder, process.pid, process))

    def _watch(self, job: _Job) -> None:
        self._job = job
        job.thread = threading.Thread(target=self._supervise, args=(job,), name=f"run-{job.kind}-{job.run}", daemon=True)
        job.thread.start()

    def _supervise(self, job: _Job) -> None:
        """Wait for the process; terminate, then kill, once a cancel's deadline passes."""
        while True:
            if job.process is not None:
                try:
                    job.returncode = job.process.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
            elif _pid_alive(job.pid, MODULES[job.kind]):
                time.sleep(0.25)
            else:
                break
            with self._lock:
                deadline = job.deadline
            if deadline is not None and time.monotonic() >= deadline:
                _signal(job, kill=job.terminated)
                job.terminated = True
                with self._lock:
                    job.deadline = time.monotonic() + KILL_GRACE_S
        with self._lock:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        job.finished = time.monotonic()
        cancelled = job.deadline is not None
        status_path = job.folder / "status.json"
        status = _read_json(status_path)
        if job.kind == "eval":
            ok = job.returncode == 0 or (job.process is None and (job.folder / "report.md").is_file())
            job.state = "cancelled" if cancelled else "done" if ok else "failed"
            job.message = "" if job.state == "cancelled" else _last_line(job.folder / LOGS["eval"])
        elif status.get("state") in ("done", "cancelled") and not job.terminated:
            job.state = status["state"]
        elif job.terminated:
            job.state, job.message = "cancelled", "stopped before it could save a checkpoint"
            write_json(status_path, {**status, "state": "cancelled", "message": job.message})
        elif job.process is None:
            job.state, job.message = "failed", "the process ended without saying why"
        else:
            code = job.returncode
            reason = f"killed by signal {-code}" if code is not None and code < 0 else _last_line(job.folder / LOGS["train"])
            job.state, job.message = "failed", reason or f"exit status {code}"
            write_json(status_path, {**status, "state": "failed", "returncode": code, "message": job.message})
        log.info("%s of %s: %s %s", job.kind, job.run, job.state, job.message)

    def _info(self, folder: Path) -> RunInfo:
        status = _read_json(folder / "status.json")
        config = _read_json(folder / "finetune_config.json")
        process = _read_json(folder / "process.json")
        state = str(status.get("state") or "unknown")
        job = self._job
        if job is not None and job.run == folder.name and job.kind == "train" and not job.finished:
            state = "cancelling" if job.state == "cancelling" else (state if state in ACTIVE else "starting")
        elif state in ACTIVE and process.get("kind") == "train" and not _pid_alive(process.get("pid"), MODULES["train"]):
            state = "interrupted"
        adapter = folder / "adapter"
        adapter = adapter if (adapter / "adapter_config.json").is_file() else None
        report = _read_json(folder / "report.json")
        evaluation = {r.get("model", ""): r for r in report.get("results", []) if isinstance(r, dict)} \
            if adapter and report.get("adapter") else {}
        # The trainer rewrites finetune_config.json at each (re)start; an evaluation does not.
        started = _mtime(folder / "finetune_config.json") or process.get("started") or _mtime(folder)
        return RunInfo(
            name=folder.name, folder=folder, state=state,
            dataset=Path(str(config.get("dataset") or "")).name, step=int(status.get("step") or 0),
            max_steps=int(status.get("max_steps") or config.get("max_steps") or 0), started=float(started),
            adapter=adapter, metrics=_read_json(adapter / "metrics.json") if adapter else {},
            evaluation={k: {"top1": v.get("top1"), "top5": v.get("top5"), "clips": v.get("clips")} for k, v in evaluation.items()},
            message=str(status.get("message") or ""),
        )


# --- helpers ------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _read_text(path: Path, tail: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            if tail:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - tail))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _last_line(log_path: Path) -> str:
    """Why a process failed: its `error: ...` line, else its last line (an exception's)."""
    lines = [line.split("\r")[-1].strip() for line in _read_text(log_path, tail=16 * 1024).splitlines()]
    lines = [line for line in lines if line and not line.startswith("===")]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")[:300]
    return lines[-1][:300] if lines else ""


def _own_session() -> dict[str, Any]:
    # Its own session / process group: Ctrl-C on the server does not reach the run, and
    # terminating the group also stops anything the run started.
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _signal(job: _Job, *, kill: bool) -> None:
    if os.name == "nt":  # TerminateProcess: Windows has nothing gentler for a console child
        sends = [lambda: os.kill(job.pid, signal.SIGTERM)]
    else:
        sig = signal.SIGKILL if kill else signal.SIGTERM
        sends = [lambda: os.killpg(job.pid, sig), lambda: os.kill(job.pid, sig)]
    for send in sends:
        try:
            send()
            return
        except OSError:
            continue


def _pid_alive(pid: Any, module: str) -> bool:
    """Whether `pid` is a live process running `module` (a reused pid or a zombie is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000 | 0x1000, False, pid)  # SYNCHRONIZE | QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT: still running
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            return module in cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
    return True
