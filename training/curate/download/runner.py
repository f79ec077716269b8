"""Download WLASL clips: concurrent, polite to each host, resumable, verified.

WLASL lists ~21,000 clips spread over a dozen sign-dictionary sites and YouTube; many
links are dead, some sites answer with an HTML page instead of a video, and a full run
takes hours, so it must survive being interrupted. Each clip ends up as
``<out>/<video_id>.mp4`` only after it was sniffed as a video container and one frame
decoded with PyAV (swf/flv/webm/... are converted to mp4). Every outcome goes to a
JSONL manifest that a re-run reads to skip finished clips and retry the rest.

    python -m training.curate download --subset WLASL100
    python -m training.curate download --sources aslpro handspeak --per-host 1

    from training.curate import download, wlasl
    layout = DataLayout.at()
    summary = download.download_instances(wlasl.filter_instances(wlasl.load_wlasl(), subset="WLASL100"),
                                          layout.videos, manifest_path=layout.download_manifest)
    print(summary.format_summary())

This module runs the jobs; the parts live beside it: ``fetch`` (HTTP and yt-dlp),
``files`` (checks, conversion, placing), ``manifest`` and ``config``; their errors are
in ``training.errors``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from training.curate.download import fetch, files
from training.curate.download.config import DownloadConfig
from training.errors import Cancelled, DownloadError
from training.curate.download.manifest import ManifestRecord, now, read_manifest, write_manifest
from training.curate.wlasl import clip_filename

logger = logging.getLogger(__name__)


class Clip(Protocol):
    """What the downloader needs of an instance (``WlaslInstance`` has it)."""

    @property
    def video_id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class SourceSummary:
    """Outcome counts for one WLASL source site."""

    source: str
    done: int
    failed: int
    skipped: int
    pending: int  # not attempted because the run was cancelled
    top_reasons: tuple[tuple[str, int], ...]  # (reason, count) of failed/skipped, most common first


@dataclass(frozen=True)
class DownloadSummary:
    """What a download run achieved, per source."""

    sources: tuple[SourceSummary, ...]
    total: int  # clips asked for (distinct video ids)
    already_done: int  # of which were done before this run and left alone
    cancelled: bool
    elapsed_s: float
    manifest_path: Path

    def format_summary(self) -> str:
        return format_summary(self)

    def outcome(self) -> tuple[str, str]:
        """("done" | "partial" | "failed", one sentence with the counts): what a run achieved.

        A run that fetched nothing is a failure, not "100 %" (every clip was *tried*), and
        YouTube clips skipped for want of yt-dlp say how to get it.
        """
        totals = Counter()
        for s in self.sources:
            totals.update(done=s.done, failed=s.failed, skipped=s.skipped, pending=s.pending)
        youtube = sum(n for s in self.sources for r, n in s.top_reasons if r == fetch.YT_DLP_MISSING)
        parts = [f"{totals[k]} {k}" for k in ("failed", "skipped", "pending") if totals[k]]
        sentence = f"Downloaded {totals['done']} of {self.total} clips" + (f" ({', '.join(parts)})" if parts else "") + "."
        if youtube:
            sentence += (f" {youtube} YouTube clips were skipped because yt-dlp is not installed: "
                         "pip install '.[youtube]' (or pip install yt-dlp), then download again.")
        if totals["failed"] or totals["skipped"]:
            sentence += " Re-run the download to retry the failed ones; many WLASL links are dead for good."
        state = "done" if totals["done"] == self.total else "failed" if totals["done"] == 0 else "partial"
        return state, sentence


def format_summary(summary: DownloadSummary) -> str:
    """A plain-text table: one row per source, a total row, and the top reasons."""
    header = f"{'source':<16}{'done':>7}{'failed':>8}{'skipped':>9}{'pending':>9}  top reasons"
    lines = [header, "-" * len(header)]
    totals = Counter()
    for s in summary.sources:
        reasons = "; ".join(f"{r} x{n}" for r, n in s.top_reasons)
        lines.append(f"{s.source:<16}{s.done:>7}{s.failed:>8}{s.skipped:>9}{s.pending:>9}  {reasons}")
        totals.update(done=s.done, failed=s.failed, skipped=s.skipped, pending=s.pending)
    lines.append("-" * len(header))
    lines.append(f"{'total':<16}{totals['done']:>7}{totals['failed']:>8}{totals['skipped']:>9}"
                 f"{totals['pending']:>9}  ({summary.already_done} already done, "
                 f"{summary.elapsed_s:.1f} s{', cancelled' if summary.cancelled else ''})")
    return "\n".join(lines)


# --- one job (one URL, one or more video ids) -----------------------------------------

@dataclass(frozen=True)
class _Job:
    url: str
    clips: tuple[Clip, ...]  # WLASL reuses some URLs for several instances: fetch once


@dataclass(frozen=True)
class _Context:
    out_dir: Path
    config: DownloadConfig
    gate: fetch.HostGate
    stop: threading.Event
    previous: dict[str, ManifestRecord]


def _records(job: _Job, status: str, *, error: str = "", size: int = 0, sha: str = "",
             attempts: int = 0) -> list[ManifestRecord]:
    return [ManifestRecord(video_id=c.video_id, url=job.url, status=status, bytes=size, sha256=sha,
                           error=error, time=now(), attempts=attempts, source=c.source)
            for c in job.clips]


def _run_job(job: _Job, ctx: _Context) -> list[ManifestRecord] | None:
    """Fetch, verify and place one URL's clip(s); None if cancelled before an outcome."""
    if ctx.stop.is_set():
        return None
    first = job.clips[0]
    final = ctx.out_dir / clip_filename(first.video_id)
    part = final.with_name(final.name + ".part")
    attempts = 0
    try:
        previous = ctx.previous.get(first.video_id)
        if final.exists():
            adopted = files.adopt(final) if previous is None or previous.status != "done" else None
            if adopted is None:
                final.unlink()  # a done clip that no longer matches the manifest: fetch again
        else:
            adopted = None
        if adopted is not None:
            size, sha = adopted
        elif fetch.is_youtube(job.url):
            yt_dlp = fetch.import_yt_dlp()
            if yt_dlp is None:
                return _records(job, "skipped", error=fetch.YT_DLP_MISSING)
            attempts = 1
            fetched = fetch.fetch_youtube(yt_dlp, job.url, ctx.out_dir / first.video_id,
                                                   ctx.config, ctx.stop)
            size, sha = files.finalize(fetched, final)
        else:
            rng = random.Random(f"{first.video_id}:{time.time_ns()}")
            attempts = fetch.fetch_http(job.url, part, ctx.gate, ctx.config, ctx.stop, rng)
            size, sha = files.finalize(part, final)
        for other in job.clips[1:]:
            files.place_copy(final, ctx.out_dir / clip_filename(other.video_id))
    except Cancelled:
        return None
    except DownloadError as e:
        return _records(job, "failed", error=str(e), attempts=e.attempts or attempts)
    except Exception as e:  # a bug or a full disk: record it and keep going with the rest
        logger.exception("unexpected error for %s", job.url)
        return _records(job, "failed", error=f"unexpected {type(e).__name__} ({e})", attempts=attempts)
    return _records(job, "done", size=size, sha=sha, attempts=attempts)


# --- the run --------------------------------------------------------------------------

def _is_still_done(record: ManifestRecord | None, clip: Clip, out_dir: Path,
                   config: DownloadConfig) -> bool:
    # Size by default: the final name only ever receives a verified file via os.replace,
    # so what is left to catch is a file deleted, truncated or replaced by hand, which
    # the size shows; hashing every clip on each re-run would read the whole dataset.
    if record is None or record.status != "done" or record.url != clip.url:
        return False
    path = out_dir / clip_filename(clip.video_id)
    try:
        if path.stat().st_size != record.bytes:
            return False
    except FileNotFoundError:
        return False
    return not config.rehash_existing or files.file_sha256(path) == record.sha256


def _plan_jobs(pending: list[Clip], out_dir: Path) -> dict[str, deque[_Job]]:
    """Group pending clips by URL, then queue the jobs per host, in input order."""
    by_url: dict[str, list[Clip]] = {}
    for clip in pending:
        by_url.setdefault(clip.url, []).append(clip)

    def part_size(clip: Clip) -> int:
        part = out_dir / (clip_filename(clip.video_id) + ".part")
        return part.stat().st_size if part.exists() else -1

    queues: dict[str, deque[_Job]] = {}
    for url, clips in by_url.items():
        # The clip with the biggest .part goes first, so a shared URL resumes where it was.
        clips.sort(key=part_size, reverse=True)
        queues.setdefault(fetch.host_key(url), deque()).append(_Job(url, tuple(clips)))
    return queues


def _summarize(clips: list[Clip], records: dict[str, ManifestRecord], *, already_done: int,
               cancelled: bool, elapsed_s: float, manifest_path: Path) -> DownloadSummary:
    counts: dict[str, Counter[str]] = {}
    reasons: dict[str, Counter[str]] = {}
    for clip in clips:
        record = records.get(clip.video_id)
        # Records from an earlier run for a different URL say nothing about this one.
        status = record.status if record is not None and record.url == clip.url else "pending"
        counts.setdefault(clip.source, Counter())[status] += 1
        if status in ("failed", "skipped"):
            # "connection closed early (got 5 of 9 bytes)" and the like group by their head.
            reasons.setdefault(clip.source, Counter())[record.error.split(" (")[0]] += 1
    sources = tuple(
        SourceSummary(source=source, done=c["done"], failed=c["failed"], skipped=c["skipped"],
                      pending=c["pending"],
                      top_reasons=tuple(reasons.get(source, Counter()).most_common(3)))
        for source, c in sorted(counts.items()))
    return DownloadSummary(sources=sources, total=len(clips), already_done=already_done,
                           cancelled=cancelled, elapsed_s=elapsed_s, manifest_path=manifest_path)


def download_instances(
    instances: Iterable[Clip],
    out_dir: str | Path,
    *,
    manifest_path: str | Path,
    config: DownloadConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    show_progress: bool = True,
) -> DownloadSummary:
    """Download every instance's clip to ``out_dir/<video_id>.mp4``; returns a summary.

    Outcomes go to ``manifest_path`` (the data layout's ``download_manifest``: the
    importer and the builds read it there); records of clips not in ``instances`` are kept. ``progress(done, total)`` is called as clips finish (for the
    UI); ``cancel`` stops the run soon after it is set: running downloads keep their
    ``.part`` files and the manifest stays valid. Ctrl-C does the same, then re-raises.
    """
    config = config or DownloadConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(manifest_path)
    records = read_manifest(manifest_path)
    previous = dict(records)
    started = time.monotonic()

    clips: list[Clip] = []
    seen: dict[str, str] = {}
    for clip in instances:
        if clip.video_id in seen:
            if seen[clip.video_id] != clip.url:
                raise ValueError(f"video_id {clip.video_id!r} appears with two URLs")
            continue
        clip_filename(clip.video_id)  # rejects ids that are not safe file names, before any work
        seen[clip.video_id] = clip.url
        clips.append(clip)
    pending = [c for c in clips if not _is_still_done(records.get(c.video_id), c, out_dir, config)]
    already_done = len(clips) - len(pending)
    queues = _plan_jobs(pending, out_dir)

    stop = threading.Event()
    ctx = _Context(out_dir=out_dir, config=config, gate=fetch.HostGate(config), stop=stop,
                   previous=previous)
    finished = already_done
    if progress is not None:
        progress(finished, len(clips))
    bar = tqdm(total=len(clips), initial=already_done, desc="WLASL clips", unit="clip",
               disable=not show_progress)
    in_flight: dict[Future, tuple[str, _Job]] = {}
    active: Counter[str] = Counter()
    last_write = 0.0
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wlasl-download")

    def collect(future: Future, notify: bool = True) -> None:
        nonlocal finished
        host, job = in_flight.pop(future)
        active[host] -= 1
        result = future.result()  # _run_job catches everything but BaseException
        if result is None:
            return
        for record in result:
            records[record.video_id] = record
        finished += len(result)
        if notify:  # not while unwinding: a callback that raised must not stop the cleanup
            bar.update(len(result))
            if progress is not None:
                progress(finished, len(clips))

    try:
        while queues or in_flight:
            if cancel is not None and cancel.is_set():
                stop.set()
            # Start jobs round-robin over hosts with a free slot: a host holding thousands of
            # clips must not occupy every worker while the other hosts wait.
            while not stop.is_set() and len(in_flight) < config.workers:
                host = next((h for h in queues if active[h] < config.per_host), None)
                if host is None:
                    break
                job = queues[host].popleft()
                if queues[host]:
                    queues[host] = queues.pop(host)  # move to the back of the rotation
                else:
                    del queues[host]
                active[host] += 1
                in_flight[executor.submit(_run_job, job, ctx)] = (host, job)
            if stop.is_set() and not in_flight:
                break
            done, _ = wait(list(in_flight), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                collect(future)
            if done and time.monotonic() - last_write >= config.manifest_interval_s:
                write_manifest(manifest_path, records.values())
                last_write = time.monotonic()
    finally:
        stop.set()  # also on Ctrl-C: workers stop between chunks and keep their .part
        executor.shutdown(wait=True, cancel_futures=True)
        for future in [f for f in in_flight if f.done() and not f.cancelled()]:
            collect(future, notify=False)
        write_manifest(manifest_path, records.values())
        bar.close()
    return _summarize(clips, records, already_done=already_done,
                      cancelled=finished < len(clips),
                      elapsed_s=time.monotonic() - started, manifest_path=manifest_path)
