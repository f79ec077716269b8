"""Gradio's upload cache on a server anyone can reach: a folder of our own, a budget, limits.

    claim_upload_folder(root)   at start, before gradio is imported: removes the folders of
                                our processes that are gone, then takes one for this process
                                (`app.py` points GRADIO_TEMP_DIR at it)
    guard_uploads(app, server, rate_limited=...)
                                on the launched server, POST /gradio_api/upload is refused
                                with one sentence when the folder holds more than
                                `upload_cache_max_mb` (507), when the client is over
                                `upload_rate_limit` (429), or when the request holds more
                                than `max_upload_files` files (400)

Why: the upload route takes anonymous uploads on a public server, up to 1,000 files a
request, and keeps them until the cache sweep; and Gradio's sweep deletes only the files
of the process that made them, so a killed process's uploads stayed for good in the
folder every Gradio app on the machine shares. No gradio import at module level, so
`app.py` can claim the folder before gradio reads GRADIO_TEMP_DIR.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from engine.errors import ConfigError
from webapp.settings import ServerConfig

MB = 1024 * 1024
# In each folder a process of ours takes; held (flock) for as long as that process runs.
# The kernel drops the lock of a process that dies, kill -9 included: a folder whose lock
# can be taken belongs to no live process and can go whole.
OWNER_LOCK = ".signlens-owner.lock"
FULL = "The server has no room for more uploads right now: try again in a few minutes."
# What is left of a refused upload's body is read and dropped up to this much before the
# answer (`_Body`).
DRAIN_BYTES = 16 * MB
DRAIN_SECONDS = 2.0
# The locks of this process's folders: kept referenced, so they are held until it exits.
_held: list[FileLock] = []
# The file limit of the upload request being parsed (set by `guard_uploads`' middleware).
_max_files: contextvars.ContextVar[int | None] = contextvars.ContextVar("signlens_max_upload_files", default=None)


def claim_upload_folder(root: Path) -> tuple[Path, list[Path]]:
    """(this process's new upload folder under `root`, the dead processes' folders removed)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(root)
    removed = remove_dead_folders(root)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    lock = FileLock(folder / OWNER_LOCK)
    lock.acquire(timeout=0)  # a folder just made: nobody else can hold it
    _held.append(lock)
    return folder, removed


def _check_private(root: Path) -> None:
    """Refuse an upload root another user owns, and close ours to others: under a shared
    /tmp another user could make it first, or write to it, and swap our folders for theirs."""
    if os.name != "posix":
        return
    info = root.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"The upload folder {root.name} belongs to another user: remove it, or set "
                          "upload_dir in server.yml to a folder of your own.")
    if info.st_mode & 0o022:
        os.chmod(root, 0o700)  # ours, but others could write to it (a loose umask): close it


def remove_dead_folders(root: Path) -> list[Path]:
    """Remove the folders under `root` that a process of ours took and that no live process holds.

    Only folders with our lock file are touched: anything else under `root` is left alone.
    """
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder / OWNER_LOCK).is_file():
            continue
        lock = FileLock(folder / OWNER_LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # its process is running: its files are its own to sweep
        try:
            shutil.rmtree(folder, ignore_errors=True)  # holding the lock: no process can take it meanwhile
        finally:
            lock.release()
        removed.append(folder)
    return removed


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (a file swept while counting is skipped)."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def guard_uploads(blocks, server: ServerConfig, *, max_file_mb: float, rate_limited: bool) -> None:
    """Refuse uploads that are too large, over the cache budget, or over the client's rate.

    Wraps the launched server's ASGI stack, as `webapp.ops.plain_413` does; every check
    runs before a byte of the body is read, so a refused upload stores nothing:
    - no declared length (chunked): 411, since the budget could not be kept;
    - longer than `max_upload_files` files of `max_file_mb` can be: 413, as Gradio would;
    - the folder plus what admitted uploads still in flight may add, plus this one, over
      `upload_cache_max_mb`: 507 (each admitted body's length is reserved until its
      request ends, so uploads sent at once cannot all pass the same free space);
    - over `upload_rate_limit` requests or `upload_mb_limit` megabytes: 429, so one
      client cannot take the whole budget for everyone else.
    `rate_limited` is False on a local server (one person, own machine).
    """
    import threading

    import anyio

    from webapp.ops import RateLimit, too_large

    _limit_files_per_upload()
    server_app = blocks.server_app
    inner = server_app.middleware_stack
    folder = Path(server_app.uploaded_file_dir)
    requests = RateLimit(server.upload_rate_limit if rate_limited else "")
    megabytes = RateLimit(server.upload_mb_limit if rate_limited else "")
    budget = server.upload_cache_max_mb * MB
    # Multipart headers and boundaries around each file: a few hundred bytes; 64 KB is ample.
    longest = server.max_upload_files * (max_file_mb * MB + 64 * 1024)
    reserved, lock = [0], threading.Lock()

    async def app(scope, receive, send):
        if not _is_upload(scope):
            return await inner(scope, receive, send)
        body = _Body(receive)
        length = _content_length(scope)
        if length is None:
            return await _refuse(body, send, 411, "Send the upload with its length (a Content-Length header).")
        if length > longest:
            return await _refuse(body, send, 413, too_large(max_file_mb))
        used = await anyio.to_thread.run_sync(folder_bytes, folder)
        with lock:
            admitted = used + reserved[0] + length <= budget
            if admitted:
                reserved[0] += length
        if not admitted:
            return await _refuse(body, send, 507, FULL)
        try:
            client = _uploader(scope, server_app)
            refusal = requests.refusal(client, what="uploads") or megabytes.refusal(
                client, cost=max(1, -(-length // MB)), what="megabytes of uploads")
            if refusal:
                return await _refuse(body, send, 429, refusal)

            async def answer(message):
                if message["type"] == "http.response.start" and message["status"] >= 400:
                    await body.drop()  # Gradio's own refusals (too many files, too large) stop reading early
                await send(message)

            token = _max_files.set(server.max_upload_files)
            try:
                await inner(scope, body.receive, answer)
            finally:
                _max_files.reset(token)
        finally:
            with lock:
                reserved[0] -= length

    server_app.middleware_stack = app


def _is_upload(scope) -> bool:
    """A POST that carries files: Gradio's upload route, or any multipart body (its other
    routes that take files, such as /gradio_api/process_recording, write into the same folder)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    if scope["path"].rstrip("/").endswith("/gradio_api/upload"):
        return True
    return any(key == b"content-type" and value.lower().startswith(b"multipart/") for key, value in scope["headers"])


def _content_length(scope) -> int | None:
    """The body's declared size; None when it is not declared (chunked) or not a number."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None


def _uploader(scope, server_app) -> str:
    """Who uploads, keyed as `webapp.ops.client_key` keys the recognition calls.

    The login name on a team server (from Gradio's session cookie: this runs before its
    login check), else the address uvicorn found (see `forwarded_allow_ips`).
    """
    from starlette.requests import Request

    cookies = Request(scope).cookies
    token = cookies.get(f"access-token-{server_app.cookie_id}") or cookies.get(
        f"access-token-unsecure-{server_app.cookie_id}")
    user = server_app.tokens.get(token) if token else None
    if user:
        return f"user:{user}"
    client = scope.get("client") or ("-",)
    return f"ip:{client[0]}"


class _Body:
    """A request's body as the app reads it, and what is left of it dropped before a refusal.

    A client still sending when the server answers and closes gets a broken pipe instead
    of the answer; up to DRAIN_BYTES (or DRAIN_SECONDS) of what is left is read and thrown
    away first (longer bodies are cut off). Nothing of either is stored.
    """

    def __init__(self, receive) -> None:
        self._receive, self.done = receive, False

    async def receive(self):
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            self.done = True
        return message

    async def drop(self) -> None:
        import anyio

        dropped = 0
        # At most DRAIN_SECONDS: a client that declared a body and sends none must not hold us.
        with anyio.move_on_after(DRAIN_SECONDS):
            while not self.done and dropped <= DRAIN_BYTES:  # once done, receive() would wait for a disconnect
                dropped += len((await self.receive()).get("body", b""))


async def _refuse(body: _Body, send, status: int, sentence: str) -> None:
    """Drop the body, then answer with `{"detail": sentence}`, as FastAPI and `plain_413` do."""
    from webapp.ops import send_sentence

    await body.drop()
    await send_sentence(send, status, sentence, ((b"retry-after", b"300"),) if status == 507 else ())


def _limit_files_per_upload() -> None:
    """Make Gradio's upload parser stop at `max_upload_files` files, with one sentence.

    Gradio 6.31 hard-codes `max_files=1000` in `route_utils.upload_fn`; its parser already
    counts the files and, past the limit, deletes the temp files it wrote for the earlier
    ones and answers 400. Lowering that one number, per request through `_max_files`,
    keeps Gradio's own cleanup; counting parts in a middleware could not undo what the
    parser had already written. Patched once per process; requests outside
    `guard_uploads` keep Gradio's limit.
    """
    from gradio import route_utils

    base = route_utils.GradioMultiPartParser
    if getattr(base, "signlens_limited", False):
        return

    class FewFilesParser(base):
        signlens_limited = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            limit = _max_files.get()
            if limit is not None:
                self.max_files = min(self.max_files, limit)

        def on_headers_finished(self) -> None:
            try:
                super().on_headers_finished()
            except route_utils.MultiPartException as exc:
                if not str(getattr(exc, "message", "")).startswith("Too many files"):
                    raise
                many = f"{self.max_files} file{'' if self.max_files == 1 else 's'}"
                raise route_utils.MultiPartException(f"Send at most {many} in one upload request.") from None

    route_utils.GradioMultiPartParser = FewFilesParser
