"""The users of a team server: names, roles and salted password hashes, in one text file.

    python -m webapp.users add alice --role admin --file users.txt   # password read from stdin
    python -m webapp.users add bob --role user --file users.txt
    python app.py --host 0.0.0.0 --auth users.txt                    # or SIGNLENS_AUTH_FILE=users.txt

One line per user, `name:role:scrypt$n$r$p$salt$hash` (salt and hash in base64), so
the file can be kept as a Space secret too (`SIGNLENS_USERS` holding the same lines).
Passwords are hashed with the standard library's scrypt (memory-hard, salted per user)
and compared in constant time; a plain password is never stored, logged or shown.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import SignLensError

ROLES = ("admin", "user")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# scrypt cost: 2**14 x 8 blocks = 16 MiB and ~50 ms per check on these CPUs, OWASP's
# minimum for scrypt; a login is rare, a guess must stay expensive.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8


class UsersError(SignLensError, ValueError):
    """A users file or a request about users that cannot be used; the message says why.

    Part of the one error family, so anything that catches `SignLensError` shows its sentence.
    """


@dataclass(frozen=True)
class User:
    name: str
    role: str
    # "scrypt$n$r$p$salt$hash"
    hashed: str


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt)}${encode(digest)}"


def _matches(password: str, hashed: str) -> bool:
    try:
        kind, n, r, p, salt, digest = hashed.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(got, expected)


class Users:
    """Who may log in, and with which role."""

    def __init__(self, users: dict[str, User]) -> None:
        self._users = users

    @classmethod
    def parse(cls, text: str, where: str = "the users file") -> "Users":
        users: dict[str, User] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, rest = line.partition(":")
            role, _, hashed = rest.partition(":")
            if not _NAME.fullmatch(name) or role not in ROLES or not hashed.startswith("scrypt$"):
                raise UsersError(f"Line {number} of {where} is not name:role:hash (make it with python -m webapp.users add).")
            users[name] = User(name, role, hashed)
        if not users:
            raise UsersError(f"{where} lists no users.")
        return cls(users)

    @classmethod
    def load(cls, path: str | Path) -> "Users":
        path = Path(path)
        try:
            return cls.parse(path.read_text(encoding="utf-8"), path.name)
        except OSError:
            raise UsersError(f"The users file {path.name} cannot be read.") from None

    def check(self, name: str, password: str) -> bool:
        """Gradio's login callback: the password matches the user's hash (constant-time)."""
        user = self._users.get(name)
        if user is None:
            _matches(password, hash_password("x", salt=b"\0" * 16))  # same work for unknown names
            return False
        return _matches(password, user.hashed)

    def role(self, name: str | None) -> str | None:
        user = self._users.get(name or "")
        return user.role if user else None

    def text(self) -> str:
        return "".join(f"{u.name}:{u.role}:{u.hashed}\n" for u in self._users.values())

    def with_user(self, name: str, role: str, password: str) -> "Users":
        if not _NAME.fullmatch(name):
            raise UsersError("A user name is letters, digits and . _ @ - (at most 64).")
        if role not in ROLES:
            raise UsersError(f"The role must be {' or '.join(ROLES)}.")
        if len(password) < MIN_PASSWORD:
            raise UsersError(f"The password must have at least {MIN_PASSWORD} characters.")
        return Users({**self._users, name: User(name, role, hash_password(password))})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.users", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user, or set an existing user's role and password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--file", required=True, help="the users file (created if missing)")
    args = parser.parse_args(argv)

    from training.atomic import write_text

    path = Path(args.file)
    try:
        users = Users.load(path) if path.is_file() and path.read_text().strip() else Users({})
        # From a terminal: asked without echo. Piped: the first line of standard input.
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        users = users.with_user(args.name, args.role, password)
    except UsersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text(path, users.text())
    os.chmod(path, 0o600)  # hashes are not passwords, but nobody else needs to read them
    print(f"{args.name} ({args.role}) saved in {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
