"""Fine-tuning runs as background processes: launch, watch, cancel, resume, evaluate, list.

The web app must keep serving while a run trains for hours, and a trainer that dies (out
of memory, a CUDA error) must not take the server with it; so each run is its own
`python -m training.finetune` process and each evaluation its own `python -m
training.evaluate`. This module only spawns those processes and reads the files they
write (the run folder format: run_folder.py); it never imports torch or transformers.

    manager = RunManager(layout, engine_config=engine.config)
    name = manager.launch("wlasl100", overrides={"max_steps": 100})
    manager.job()             # what runs now (or ran last): kind, run, state, message
    manager.cancel()          # touch CANCEL; terminated if it has not stopped in time
    manager.resume(name)      # --resume from the run's last checkpoint
    manager.evaluate(name)    # report.md / report.json / confusion_*.png in the run folder
    manager.runs()            # every run folder with its state and metrics, newest first

One process at a time, training or evaluation (each loads its own copy of the model):
another launch raises `RunBusy`. Configs travel as files: the serving engine's resolved
config (model, device, quantization, prompt, frames, crop, limits, vocabulary) is written
to the run's engine_config.json and the resolved fine-tune config to finetune_config.json
before the child starts, and the child reads exactly those; a resume and an evaluation
read the run's own files again. Besides what the trainer writes, a run folder holds
process.log (the trainer's stdout and stderr), eval.log (the evaluator's) and
process.json (pid, command, start time of the last one).
Children run in their own session: restarting the server does not kill a run, and the
next server finds it by its pid (one at a time still holds, and Cancel still works).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.atomic import write_json
from training.dataset import EVAL_SPLIT, list_datasets, load_dataset
from training.errors import RunBusy, RunError
from training.finetune.config import load_finetune_config
from training.finetune.run_folder import RunFolder, default_run_name, read_json, read_losses
from training.layout import DataLayout, check_folder_name, is_folder_name

log = logging.getLogger(__name__)

# Where `python -m training...` resolves for the children (the repository, or site-packages).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
MODULES = {"train": "training.finetune", "eval": "training.evaluate"}
# Letters, digits, ".", "_", "-"; no leading dot, so never ".", ".." or a hidden folder
# (the trainer stages adapters in ".adapter.*").
# A default name is "<dataset>-<UTC timestamp>": a 64-character dataset name fits.
NAME_LONGEST = 100
# The trainer stops at the end of the step after CANCEL appears and saves a checkpoint;
# a step of a 2B model on a CPU can take minutes, so wait this long before terminating.
CANCEL_TIMEOUT_S = 180.0
# After SIGTERM, how long before SIGKILL.
KILL_GRACE_S = 10.0
ACTIVE = ("starting", "running")


def check_name(name: str | None) -> str:
    """A run name, or one sentence saying why it cannot be one."""
    return check_folder_name(name, kind="run", longest=NAME_LONGEST, error=RunError)


def child_engine_config(engine_config: Any) -> Any:
    """The serving engine's config as a child must load it: the base model (no adapter),
    a local model folder and the vocabulary as absolute paths (the child's working
    directory is not the server's)."""
    model, recognition = engine_config.model, engine_config.recognition
    model_id = str(Path(model.id).resolve()) if Path(model.id).exists() else model.id
    return dataclasses.replace(
        engine_config,
        model=dataclasses.replace(model, id=model_id, adapter=""),
        recognition=dataclasses.replace(recognition, vocabulary=str(engine_config.vocabulary_path().resolve())),
    )


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
class ProcessState:
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
    def __init__(self, layout: DataLayout, *, engine_config: Any, cancel_timeout_s: float = CANCEL_TIMEOUT_S,
                 python: str = sys.executable) -> None:
        self.layout = layout
        self.runs_root = layout.runs
        self.engine_config = engine_config
        self.cancel_timeout_s = cancel_timeout_s
        self.python = python
        self._lock = threading.RLock()
        self._job: _Job | None = None
        self._scanned = 0.0

    # --- launching -------------------------------------------------------------------

    def launch(self, dataset: str, *, run_name: str = "", overrides: Mapping[str, Any] | None = None) -> str:
        """Start training `dataset` in the background; returns the run's name."""
        if not dataset or dataset not in list_datasets(self.layout):
            raise RunError(f"There is no built dataset named {str(dataset)[:40]!r}: build it in the Curate tab first.")
        name = check_name(run_name) if (run_name or "").strip() else default_run_name(dataset)
        fixed = {"dataset", "run_name", "output_dir"} & set(overrides or {})
        if fixed:
            raise RunError(f"{', '.join(sorted(fixed))} cannot be overridden here.")
        config = load_finetune_config(overrides={**(overrides or {}), "dataset": dataset, "run_name": name,
                                                 "output_dir": str(self.runs_root)})
        with self._lock:
            self._ensure_idle()
            run = RunFolder(self.runs_root / name)
            if run.path.exists():
                raise RunError(f"A run named {name} exists already: choose another name, or resume it.")
            run.path.mkdir(parents=True)
            write_json(run.finetune_config, config.to_dict())
            write_json(run.engine_config, child_engine_config(self.engine_config).to_dict())
            self._start("train", name, self._train_args(run))
        return name

    def resume(self, name: str) -> str:
        """Continue a cancelled, failed or interrupted run from its last checkpoint."""
        folder = self._folder(name)
        run = RunFolder(folder)
        if not (run.finetune_config.is_file() and run.engine_config.is_file()):
            raise RunError(f"The run {folder.name} never got as far as saving its settings; start a new run instead.")
        with self._lock:
            self._ensure_idle()
            state = self._info(folder).state
            if state == "done":
                raise RunError(f"The run {folder.name} has finished already; start a new run instead.")
            if state in (*ACTIVE, "cancelling"):  # e.g. a command-line run this app did not start
                raise RunBusy(f"The run {folder.name} still says it is {state}; wait for it, or stop it first.")
            run.cancel.unlink(missing_ok=True)
            self._start("train", folder.name, [*self._train_args(run), "--resume"])
        return folder.name

    def delete(self, name: str) -> str:
        """Remove a run that is not running (a failed or interrupted one, or any finished one) and its folder."""
        folder = self._folder(name)
        if not folder.is_dir():
            raise RunError(f"There is no run named {folder.name}.")
        with self._lock:
            job = self._current(force_scan=True)
            state = self._info(folder).state
            if (job is not None and job.run == folder.name) or state in (*ACTIVE, "cancelling"):
                raise RunBusy(f"The run {folder.name} is {state}; cancel it before deleting it.")
            shutil.rmtree(folder)
        return folder.name

    def evaluate(self, name: str, *, dataset: str = "", split: str = EVAL_SPLIT) -> str:
        """Evaluate a run's adapter (and the base model) on its dataset; the report lands in the run folder."""
        adapter = self.adapter_path(name)
        run = RunFolder(adapter.parent)
        dataset = dataset or str(read_json(run.finetune_config).get("dataset", ""))
        if not dataset:
            raise RunError(f"The run {name} does not say which dataset it was trained on.")
        if problem := load_dataset(dataset, self.layout).lacks(split):
            raise RunError(problem)
        with self._lock:
            self._ensure_idle()
            self._start("eval", run.name, ["--dataset", dataset, "--split", split, "--adapter", str(adapter),
                                           "--engine-config", str(run.engine_config), "--data", str(self.layout.root)])
        return run.name

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
                    RunFolder(job.folder).cancel.touch()
                    if RunFolder(job.folder).read_status().get("state") == "running":
                        wait = self.cancel_timeout_s if timeout_s is None else timeout_s
                job.deadline, job.state = time.monotonic() + wait, "cancelling"
            return job.run

    def wait(self, timeout: float | None = None) -> ProcessState:
        job = self._job
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.job()

    # --- reading ---------------------------------------------------------------------

    def job(self) -> ProcessState:
        with self._lock:
            self._current()
            job = self._job
            if job is None:
                return ProcessState("", "", "idle", None, 0.0, "")
            end = job.finished or time.monotonic()
            return ProcessState(job.kind, job.run, job.state, job.returncode, end - job.started, job.message)

    def runs(self) -> list[RunInfo]:
        """Every run folder, newest first."""
        if not self.runs_root.is_dir():
            return []
        folders = [p for p in self.runs_root.iterdir() if p.is_dir() and not p.is_symlink() and is_folder_name(p.name, NAME_LONGEST)
                   and any(f.is_file() for f in (RunFolder(p).finetune_config, RunFolder(p).process, RunFolder(p).status))]
        return sorted((self._info(p) for p in folders), key=lambda r: r.started, reverse=True)

    def run(self, name: str) -> RunInfo:
        folder = self._folder(name)
        if not folder.is_dir():
            raise RunError(f"There is no run named {folder.name}.")
        return self._info(folder)

    def adapter_path(self, name: str) -> Path:
        adapter = RunFolder(self._folder(name)).finished_adapter()
        if adapter is None:
            raise RunError(f"The run {check_name(name)} has no finished adapter.")
        return adapter

    def losses(self, name: str) -> list[tuple[int, float]]:
        """(step, loss) from train_log.jsonl; after a resume the repeated steps keep their latest value."""
        return read_losses(RunFolder(self._folder(name)).train_log)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of the run's most recently written log (training or evaluation).

        Progress bars rewrite their line with carriage returns; only each line's last state is kept.
        """
        run = RunFolder(self._folder(name))
        logs = [path for path in (run.log("train"), run.log("eval")) if path.is_file()]
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
            record = read_json(RunFolder(folder).process) if is_folder_name(folder.name, NAME_LONGEST) else {}
            kind, pid = record.get("kind"), record.get("pid")
            if kind in MODULES and isinstance(pid, int) and _pid_alive(pid, MODULES[kind]):
                job = _Job(kind, folder.name, folder, pid, None)
                if isinstance(record.get("started"), (int, float)):
                    job.started -= max(0.0, time.time() - record["started"])
                self._watch(job)
                log.info("found a running %s process (pid %d) for run %s", kind, pid, folder.name)
                return job
        return None

    def _train_args(self, run: RunFolder) -> list[str]:
        return ["--config", str(run.finetune_config), "--engine-config", str(run.engine_config),
                "--data", str(self.layout.root)]

    def _start(self, kind: str, name: str, args: list[str]) -> None:
        run = RunFolder(self.runs_root / name)
        command = [self.python, "-m", MODULES[kind], *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        with open(run.log(kind), "a", encoding="utf-8") as handle:
            # The UI shows this log: no server paths in it (the data root reads as <data>).
            shown = shlex.join(["python", *command[1:]]).replace(str(self.layout.root), "<data>")
            handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shown}\n")
            handle.flush()
            process = subprocess.Popen(command, cwd=PACKAGE_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                       stderr=subprocess.STDOUT, **_own_session())
        write_json(run.process, {"kind": kind, "pid": process.pid, "command": command, "started": time.time()})
        log.info("started %s of %s (pid %d)", kind, name, process.pid)
        self._watch(_Job(kind, name, run.path, process.pid, process))

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
        run = RunFolder(job.folder)
        status_path = run.status
        status = read_json(status_path)
        if job.kind == "eval":
            ok = job.returncode == 0 or (job.process is None and run.report_text.is_file())
            job.state = "cancelled" if cancelled else "done" if ok else "failed"
            job.message = "" if job.state == "cancelled" else _last_line(run.log("eval"))
        elif status.get("state") in ("done", "cancelled") and not job.terminated:
            job.state = status["state"]
        elif job.terminated:
            job.state, job.message = "cancelled", "stopped before it could save a checkpoint"
            write_json(status_path, {**status, "state": "cancelled", "message": job.message})
        elif job.process is None:
            job.state, job.message = "failed", "the process ended without saying why"
        else:
            code = job.returncode
            reason = f"killed by signal {-code}" if code is not None and code < 0 else _last_line(run.log("train"))
            job.state, job.message = "failed", reason or f"exit status {code}"
            write_json(status_path, {**status, "state": "failed", "returncode": code, "message": job.message})
        log.info("%s of %s: %s %s", job.kind, job.run, job.state, job.message)

    def _info(self, folder: Path) -> RunInfo:
        run = RunFolder(folder)
        status = read_json(run.status)
        config = read_json(run.finetune_config)
        process = read_json(run.process)
        state = str(status.get("state") or "unknown")
        job = self._job
        if job is not None and job.run == folder.name and job.kind == "train" and not job.finished:
            # The trainer writes "done" before its process ends (saving the adapter, the
            # metrics): that is "saving", not back to "starting".
            state = ("cancelling" if job.state == "cancelling" else state if state in ACTIVE
                     else "saving" if state == "done" else "starting")
        elif state in ACTIVE and process.get("kind") == "train" and not _pid_alive(process.get("pid"), MODULES["train"]):
            state = "interrupted"
        adapter = run.finished_adapter()
        report = read_json(run.report)
        evaluation = {r.get("model", ""): r for r in report.get("results", []) if isinstance(r, dict)} \
            if adapter and report.get("adapter") else {}
        # The trainer rewrites finetune_config.json at each (re)start; an evaluation does not.
        started = _mtime(run.finetune_config) or process.get("started") or _mtime(folder)
        return RunInfo(
            name=folder.name, folder=folder, state=state,
            dataset=Path(str(config.get("dataset") or "")).name, step=int(status.get("step") or 0),
            max_steps=int(status.get("max_steps") or config.get("max_steps") or 0), started=float(started),
            adapter=adapter, metrics=read_json(adapter / "metrics.json") if adapter else {},
            evaluation={k: {"top1": v.get("top1"), "top5": v.get("top5"), "clips": v.get("clips")} for k, v in evaluation.items()},
            message=str(status.get("message") or ""),
        )


# --- helpers ------------------------------------------------------------------------------

def _read_text(path: Path, tail: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            if tail:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - tail))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


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
