"""Who may do what: the server's posture, chosen safely from how it was started.

    local   bound to loopback, no users: everything on, no login (one person, own machine)
    public  bound to another address, on a Hugging Face Space (SPACE_ID), a Gradio share
            link (GRADIO_SHARE), or --public / SIGNLENS_PUBLIC=1, with no users:
            recognition only; the Curate and Fine-tune tabs are not built, so their
            endpoints do not exist
    team    users configured (--auth FILE, SIGNLENS_AUTH_FILE, or the SIGNLENS_USERS
            secret): Gradio's login in front of everything; role admin gets all four
            tabs, role user recognition only

A hidden tab is no security boundary: every curate and fine-tune handler is wrapped by
`Access.guard`, which checks the caller's role on the server for each call.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gradio as gr

from webapp.common import user_errors
from webapp.users import Users

ADMINS_ONLY = "Only an admin can do that: log in as one."
PUBLIC_ONLY_RECOGNITION = "That is off on this public server: it recognizes signs and saves nothing."
HOW_TO_ENABLE = ("Curating and fine-tuning are off on this public server. To turn them on, add users "
                 "(`python -m webapp.users add NAME --role admin --file users.txt`) and start with `--auth users.txt`, "
                 "or on a Space put that file's lines in a `SIGNLENS_USERS` secret.")


@dataclass(frozen=True)
class Access:
    # "local" | "public" | "team"
    posture: str
    # One line for the header: why this posture.
    reason: str
    users: Users | None = None

    @property
    def curation(self) -> bool:
        """Whether the Curate and Fine-tune tabs (and their endpoints) exist at all."""
        return self.posture != "public"

    def is_admin(self, username: str | None) -> bool:
        if self.posture == "local":
            return True
        return self.posture == "team" and self.users is not None and self.users.role(username) == "admin"

    def guard(self, fn: Callable, *, quiet: int = 0) -> Callable:
        """`user_errors(fn)`, refused with one sentence unless the caller is an admin.

        The wrapper takes a `gr.Request` first (Gradio fills it in; it is not an input),
        so the check runs on the server for every call, from the page or the API alike.
        `quiet=N` is for what the page itself calls (timers, page-load refreshes, with N
        outputs): a non-admin's page gets its N outputs left as they are instead of a
        refusal every tick.
        """
        handler = user_errors(fn)

        @functools.wraps(fn)
        def wrapper(request: gr.Request | None, *args: Any, **kwargs: Any) -> Any:
            if not self.is_admin(getattr(request, "username", None)):
                if quiet:
                    return gr.skip() if quiet == 1 else tuple(gr.skip() for _ in range(quiet))
                raise gr.Error(ADMINS_ONLY if self.posture == "team" else PUBLIC_ONLY_RECOGNITION, print_exception=False)
            return handler(*args, **kwargs)

        # Gradio passes a gr.Request to the positional parameter whose type hint says so,
        # inserted before the inputs: declare only that one, as a class, so no string
        # annotation of `fn` has to be evaluated.
        signature = inspect.signature(fn)
        request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
        wrapper.__signature__ = signature.replace(parameters=[request, *signature.parameters.values()])
        wrapper.__annotations__ = {"request": gr.Request}
        return wrapper


LOCAL = Access("local", "listening on this machine only, with no users: everything on, no login")


def choose_access(host: str, *, public: bool, auth_file: str | None, environ: Mapping[str, str]) -> Access:
    """The posture for a server started on `host` with these flags and environment."""
    auth_file = auth_file or environ.get("SIGNLENS_AUTH_FILE")
    if auth_file:
        return Access("team", f"users from {auth_file.rsplit('/', 1)[-1]}: log in; admins curate and fine-tune",
                      Users.load(auth_file))
    if environ.get("SIGNLENS_USERS", "").strip():
        return Access("team", "users from the SIGNLENS_USERS secret: log in; admins curate and fine-tune",
                      Users.parse(environ["SIGNLENS_USERS"], "SIGNLENS_USERS"))
    if environ.get("SPACE_ID"):
        return Access("public", "running on a Hugging Face Space with no users: recognition only")
    if public or _truthy(environ.get("SIGNLENS_PUBLIC")):
        return Access("public", "started as public with no users: recognition only")
    if _truthy(environ.get("GRADIO_SHARE")):
        # Gradio opens a public share link by itself when this is set: anyone may reach it.
        return Access("public", "sharing a public Gradio link with no users: recognition only")
    if not _loopback(host):
        return Access("public", f"listening on {host}, beyond this machine, with no users: recognition only")
    return LOCAL


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
