"""Who may do what: the three postures, users and roles, over real servers and in the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import ROOT, free_port, http_get, tiny_config
from engine import SignLensError
from media import write_video
from webapp.access import ADMINS_ONLY, PUBLIC_ONLY_RECOGNITION, choose_access
from webapp.users import Users, UsersError

RECOGNITION = {"recognize", "recognize_batch", "sentence", "model_info"}


def add_user(path, name, role, password) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webapp.users", "add", name, "--role", role, "--file", str(path)],
                          input=password + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.txt"
    assert add_user(path, "alice", "admin", "correct horse").returncode == 0
    assert add_user(path, "bob", "user", "battery staple").returncode == 0
    return path


def test_users_file_holds_salted_hashes_only(users_file, tmp_path):
    text = users_file.read_text()
    assert "correct horse" not in text and "battery staple" not in text
    assert [line.split(":")[:2] for line in text.splitlines()] == [["alice", "admin"], ["bob", "user"]]
    assert oct(users_file.stat().st_mode & 0o777) == "0o600"
    users = Users.load(users_file)
    assert users.check("alice", "correct horse") and not users.check("alice", "battery staple")
    assert not users.check("mallory", "correct horse") and users.role("bob") == "user" and users.role("x") is None
    # The same password twice gives two hashes (salted).
    again = tmp_path / "u.txt"
    add_user(again, "alice", "admin", "correct horse")
    assert again.read_text().split(":")[2] != text.splitlines()[0].split(":")[2]
    short = add_user(tmp_path / "v.txt", "eve", "admin", "short")
    assert short.returncode == 2 and short.stderr == "error: The password must have at least 8 characters.\n"
    with pytest.raises(UsersError, match="Line 1 of SIGNLENS_USERS is not name:role:hash"):
        Users.parse("alice:root:plain", "SIGNLENS_USERS")
    # One error family: whatever catches SignLensError (the app's start, the CLIs) shows the sentence.
    with pytest.raises(SignLensError, match="SIGNLENS_USERS lists no users"):
        Users.parse("# nobody yet\n", "SIGNLENS_USERS")


@pytest.mark.parametrize("host,flags,env,posture", [
    ("127.0.0.1", {}, {}, "local"),
    ("localhost", {}, {}, "local"),
    ("::1", {}, {}, "local"),
    ("0.0.0.0", {}, {}, "public"),
    ("192.168.1.20", {}, {}, "public"),
    ("127.0.0.1", {"public": True}, {}, "public"),
    ("127.0.0.1", {}, {"SIGNLENS_PUBLIC": "1"}, "public"),
    ("127.0.0.1", {}, {"SPACE_ID": "someone/signlens"}, "public"),
    ("127.0.0.1", {}, {"GRADIO_SHARE": "True"}, "public"),  # Gradio opens a public link by itself
    ("127.0.0.1", {}, {"GRADIO_SHARE": "False"}, "local"),
    ("0.0.0.0", {"auth": True}, {}, "team"),
    ("0.0.0.0", {}, {"SPACE_ID": "someone/signlens", "SIGNLENS_USERS": True}, "team"),
])
def test_the_posture_follows_from_how_the_server_was_started(users_file, host, flags, env, posture):
    environ = {k: (users_file.read_text() if v is True else v) for k, v in env.items()}
    access = choose_access(host, public=flags.get("public", False), auth_file=str(users_file) if flags.get("auth") else None,
                           environ=environ)
    assert access.posture == posture and access.reason
    assert access.curation == (posture != "public")
    assert access.is_admin(None) == (posture == "local")
    assert access.is_admin("alice") == (posture in ("local", "team")) and access.is_admin("bob") == (posture == "local")
    # A refusal says what this server is: a login helps on a team server, nothing does on a public one.
    if posture != "local":
        refused = access.guard(lambda: "saved")
        with pytest.raises(gr.Error, match=ADMINS_ONLY if posture == "team" else PUBLIC_ONLY_RECOGNITION):
            refused(SimpleNamespace(username="bob"))


def _endpoints(client: Client) -> set[str]:
    return {name.lstrip("/") for name in client.view_api(print_info=False, return_format="dict")["named_endpoints"]}


def test_public_server_recognizes_and_offers_nothing_else(tiny_model_dir, tmp_path):
    """`SIGNLENS_PUBLIC=1 python app.py`: what a Space gets without users."""
    port = free_port()
    env = {**os.environ, "SIGNLENS_PUBLIC": "1", "SIGNLENS_MODEL": str(tiny_model_dir), "SIGNLENS_DEVICE": "cpu",
           "SIGNLENS_QUANTIZATION": "none", "SIGNLENS_DTYPE": "float32", "SIGNLENS_DATA": str(tmp_path / "data"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and http_get(f"{url}/readyz")[0] != 200:
            assert server.poll() is None, server.stderr.read()[-2000:]
            time.sleep(0.5)
        assert http_get(f"{url}/healthz") == (200, "ok")
        status, body = http_get(f"{url}/readyz")
        assert status == 200 and json.loads(body)["state"] == "ready"
        client = Client(url, verbose=False)
        assert _endpoints(client) == RECOGNITION  # no curate_* or finetune_* endpoint exists
        clip = write_video(tmp_path / "sign.mp4", 20)
        assert client.predict(handle_file(str(clip)), 0, 0, api_name="/recognize")["file"] == "sign.mp4"
        config = http_get(f"{url}/config")[1]
        assert '"Curate"' not in config and "Fine-tune" not in config and "--auth users.txt" in config
        assert str(ROOT) not in config and str(tmp_path) not in config  # no server paths in the page
        metrics = http_get(f"{url}/metrics")[1]
        assert 'signlens_requests_total{endpoint="recognize",outcome="ok"} 1.0' in metrics
        assert 'signlens_model_state{state="ready"} 1.0' in metrics and "signlens_queue_depth" in metrics
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="module")
def team(tiny_model_dir, users_file, tmp_path_factory):
    """A team server over the tiny model: alice is an admin, bob a user."""
    from engine import Engine
    from training.layout import DataLayout
    from webapp.app import build_app, serve

    engine = Engine(tiny_config(tiny_model_dir)).start()
    access = choose_access("0.0.0.0", public=False, auth_file=str(users_file), environ={})
    app = build_app(engine, layout=DataLayout.at(tmp_path_factory.mktemp("team-data")), access=access)
    serve(app, engine, access=access, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    yield app.local_url.rstrip("/")
    app.close()
    engine.close()


# One call of every curate and fine-tune endpoint, with arguments of the right shape.
SELECTION = ["assets/glossaries/asl_core_320.txt", "WLASL100", [], "official", ["accepted"]]
ADMIN_CALLS = {
    "curate_stats": SELECTION, "curate_clips": ["book", *SELECTION], "curate_search": ["book", *SELECTION],
    "curate_pending": SELECTION, "curate_preview": ["wlasl:07069"], "curate_relabel": ["wlasl:07069", "drink", SELECTION[0]],
    "curate_accept": ["user:abc"], "curate_exclude": ["wlasl:07069"], "curate_restore": ["wlasl:07069"],
    "curate_add_clip": [None, "book", SELECTION[0]], "curate_download_start": SELECTION,
    "curate_build_start": ["x", *SELECTION], "curate_import_start": ["/nowhere"], "curate_stop": [], "curate_job_status": [], "curate_datasets": [],
    "curate_export": [None], "finetune_start": [None, "", 1, 1, 1e-4, 8, False], "finetune_cancel": [],
    "finetune_resume": [None], "finetune_delete": [None], "finetune_refresh": [], "finetune_status": [None, None, {}],
    "finetune_evaluate": [None], "finetune_activate": [None], "finetune_deactivate": [], "finetune_adapters": [],
}


POLLED = {"curate_job_status", "finetune_status"}


def test_team_server_lets_only_admins_curate_and_fine_tune(team):
    with pytest.raises(Exception, match="credentials were not provided"):
        Client(team, verbose=False)  # anonymous: nothing at all
    user = Client(team, auth=("bob", "battery staple"), verbose=False)
    admin = Client(team, auth=("alice", "correct horse"), verbose=False)
    names = _endpoints(admin)
    assert set(ADMIN_CALLS) | RECOGNITION == names  # every endpoint is in the table above
    for name, args in ADMIN_CALLS.items():
        if name in POLLED:  # what the page polls answers a non-admin with nothing, not a refusal per tick
            answer = user.predict(*args, api_name=f"/{name}")
            assert "No download or build" not in str(answer) and "No training" not in str(answer)
            continue
        with pytest.raises(AppError, match=ADMINS_ONLY):
            user.predict(*args, api_name=f"/{name}")
    assert user.predict(api_name="/model_info")["state"] == "ready"  # recognition is everyone's
    assert "No download or build" in admin.predict(api_name="/curate_job_status")
    assert admin.predict("wlasl:07069", api_name="/curate_exclude") == "wlasl:07069 excluded."
    assert "No training" in admin.predict(None, None, {}, api_name="/finetune_status")[0]


def test_team_page_shows_the_admin_tabs_to_admins_only(users_file, tiny_model_dir, tmp_path):
    """The page's load event sets the tabs' visibility from the login (the handlers' checks are what guard)."""
    from types import SimpleNamespace

    from engine import Engine
    from training.layout import DataLayout
    from webapp.app import build_app

    access = choose_access("0.0.0.0", public=False, auth_file=str(users_file), environ={})
    app = build_app(Engine(tiny_config(tiny_model_dir)), layout=DataLayout.at(tmp_path), access=access)
    [load] = [fn.fn for fn in app.fns.values() if fn.name == "admin_tabs"]
    for name, visible in (("alice", True), ("bob", False), (None, False)):
        tabs = load(SimpleNamespace(username=name))
        assert [tab.visible for tab in tabs] == [visible, visible]
    public = build_app(Engine(tiny_config(tiny_model_dir)), layout=DataLayout.at(tmp_path),
                       access=choose_access("0.0.0.0", public=False, auth_file=None, environ={}))
    labels = {getattr(block, "label", None) for block in public.blocks.values() if isinstance(block, gr.Tab)}
    assert labels == {"Live", "Upload"}


def test_login_attempts_are_limited_per_address(tiny_model_dir, users_file, tmp_path):
    """Gradio's /login has no limit: guessing passwords would also burn a core on scrypt."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from engine import Engine
    from training.layout import DataLayout
    from webapp.app import build_app, serve
    from webapp.settings import ServerConfig

    engine = Engine(tiny_config(tiny_model_dir)).start()
    access = choose_access("0.0.0.0", public=False, auth_file=str(users_file), environ={})
    app = build_app(engine, layout=DataLayout.at(tmp_path), access=access, server=ServerConfig(login_rate_limit="3/minute"))
    serve(app, engine, access=access, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        def login(password: str) -> tuple[int, str]:
            form = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            try:
                with urllib.request.urlopen(urllib.request.Request(f"{app.local_url}login", data=form), timeout=30) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        assert [login("wrong guess")[0] for _ in range(2)] == [400, 400]  # Gradio's own "incorrect credentials"
        assert login("correct horse")[0] == 200  # the third attempt, within the limit, logs in
        status, body = login("correct horse")
        assert status == 429 and json.loads(body)["detail"].startswith("Too many login attempts from you (3 per 1 minute)")
        assert http_get(f"{app.local_url}healthz")[0] == 200  # nothing else is limited by it
    finally:
        app.close()
        engine.close()
