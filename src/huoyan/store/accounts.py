"""Users, roles, browser sessions and API keys.

Passwords are hashed with argon2id (argon2-cffi). Session tokens and API keys are
random secrets handed out once; only their sha256 is stored, so reading the table
does not let anyone log in. Roles are ordered: an engineer may do what an operator
may, an admin what an engineer may.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huoyan.core.recipe import STATION_ID
from huoyan.core.records import utcnow
from huoyan.core.text import Message
from huoyan.store.records import UNAVAILABLE, as_utc
from huoyan.store.schema import ApiKeyRow, SessionRow, UserRow

# Letters and digits of any script (李工, Müller), . _ @ -, single spaces between words.
USERNAME = re.compile(r"^[\w.@-]+( [\w.@-]+)*$")
USERNAME_CHARS = 100


def display_name_of(text: str | None) -> str | None:
    """A display name as stored: any script, one NFC spelling, inner runs of spaces made
    one; None for a blank one. ``AccountError`` if it is too long or holds control characters."""
    if text is None:
        return None
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if len(name) > 100 or any(unicodedata.category(c).startswith("C") for c in name):
        raise AccountError(Message("a display name is at most 100 characters, without control characters"))
    return name or None


def username_of(text: str) -> str:
    """A user name as stored and compared: NFC-normalised (the same name typed on two
    keyboards is one name), checked; ``AccountError`` says what a name may hold."""
    name = unicodedata.normalize("NFC", text)
    if not 1 <= len(name) <= USERNAME_CHARS or not USERNAME.match(name):
        raise AccountError(
            Message(
                "a user name is 1-{n} letters or digits (any script), . _ @ - and single spaces between words",
                n=USERNAME_CHARS,
            )
        )
    return name


MIN_PASSWORD = 8
API_KEY_PREFIX = "hy_"
OUTAGE_GRACE_S = 12 * 3600.0
LAST_USED_EVERY = timedelta(minutes=1)
_hasher = PasswordHasher()


class Role(StrEnum):
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class Scope(StrEnum):
    """What an API key may do, within its user's role. ``admin`` is all the role allows."""

    UPLOAD = "upload"  # send parts to inspect
    READ = "read"  # records, images, stations, metrics
    REVIEW = "review"  # judge inspected parts (reviews feed retraining)
    STATION = "station"  # a station on another PC: report its status, take the server's commands
    ADMIN = "admin"


DEFAULT_KEY_SCOPES = (Scope.UPLOAD,)
# What a key limited to named stations may do: act for them. Reading and reviewing are not
# limited by station, so a key with those scopes is never given a station list.
STATION_SCOPES = frozenset({Scope.UPLOAD, Scope.STATION})


def parse_scopes(text: str) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in text.split(",") if s)


class AccountError(ValueError):
    """A user or key that cannot be created or changed as asked."""


def check_key_stations(stations: Sequence[str], scopes: Iterable[Scope]) -> None:
    """Raise ``AccountError`` unless ``stations`` can limit a key of ``scopes``."""
    if not stations:
        raise AccountError(Message("name at least one station, or none to allow any"))
    bad = [s for s in stations if not re.fullmatch(STATION_ID, s) or len(s) > 128]
    if bad:
        raise AccountError(Message("not a station id: {ids}", ids=", ".join(bad)))
    wide = sorted(set(scopes) - STATION_SCOPES)
    if wide:
        raise AccountError(
            Message(
                "a key limited to stations may only upload to them and report as them, not: {scopes}",
                scopes=", ".join(wide),
            )
        )


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    language: str | None = None  # the dashboard's language the user chose; None: the browser's
    display_name: str | None = None  # how the dashboard names the user; None: the user name


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A valid key as the server sees it: whose, which, and what it may do."""

    user: User
    id: int
    scopes: frozenset[Scope]
    stations: frozenset[str] | None = None  # the stations it may act for; None: any


def _user(row: UserRow) -> User:
    return User(
        row.id, row.username, Role(row.role), row.active, as_utc(row.created_at), row.language, row.display_name
    )


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: Engine, session_hours: float = 12.0) -> None:
        self.engine = engine
        self.session_ttl = timedelta(hours=session_hours)
        self._seen_keys: dict[str, tuple[ApiKey, float]] = {}

    # -- users ------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: Role, created_by: str | None = None) -> User:
        username = username_of(username)
        if len(password) < MIN_PASSWORD:
            raise AccountError(Message("a password needs at least {n} characters", n=MIN_PASSWORD))
        row = UserRow(
            username=username,
            password_hash=_hasher.hash(password),
            role=Role(role).value,
            active=True,
            created_at=utcnow(),
            created_by=created_by,
        )
        try:
            with Session(self.engine) as s, s.begin():
                s.add(row)
                s.flush()
                return _user(row)
        except IntegrityError as exc:
            raise AccountError(Message("user '{name}' already exists", name=username)) from exc

    def users(self) -> list[User]:
        with Session(self.engine) as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]

    def get(self, username: str) -> User | None:
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == unicodedata.normalize("NFC", username)))
            return None if row is None else _user(row)

    def update(
        self,
        username: str,
        role: Role | None = None,
        active: bool | None = None,
        password: str | None = None,
        display_name: str | None = None,
    ) -> User:
        """Change what is given; ``display_name`` "" clears it (the user name is shown again)."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.username == unicodedata.normalize("NFC", username)))
            if row is None:
                raise AccountError(Message("no user '{username}'", username=username))
            if display_name is not None:
                row.display_name = display_name_of(display_name)
            if role is not None:
                row.role = Role(role).value
            if active is not None:
                row.active = active
                if not active:  # a disabled user's open sessions end now
                    s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            if password is not None:
                if len(password) < MIN_PASSWORD:
                    raise AccountError(Message("a password needs at least {n} characters", n=MIN_PASSWORD))
                row.password_hash = _hasher.hash(password)
                # Whoever knew the old password may hold a session: every one ends now.
                s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            return _user(row)

    def set_language(self, username: str, language: str | None) -> User:
        """The dashboard's language for this user (None: follow the browser)."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.username == unicodedata.normalize("NFC", username)))
            if row is None:
                raise AccountError(Message("no user '{username}'", username=username))
            row.language = language
            return _user(row)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right and the account active, else None."""
        username = unicodedata.normalize("NFC", username)
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                _hasher.hash(password)  # same work as a real check: no user enumeration by timing
                return None
            try:
                _hasher.verify(row.password_hash, password)
            except (VerificationError, InvalidHashError):
                return None
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            return _user(row) if row.active else None

    # -- sessions ---------------------------------------------------------------------
    def open_session(self, user: User) -> tuple[str, str]:
        """A new session: (token for the cookie, CSRF token for the page)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with Session(self.engine) as s, s.begin():
            s.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            s.add(
                SessionRow(
                    token_sha256=token_sha256(token),
                    user_id=user.id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + self.session_ttl,
                )
            )
        return token, csrf

    def session_user(self, token: str) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session, or None."""
        with Session(self.engine) as s:
            row = s.get(SessionRow, token_sha256(token))
            if row is None or as_utc(row.expires_at) < utcnow():
                return None
            user = s.get(UserRow, row.user_id)
            if user is None or not user.active:
                return None
            return _user(user), row.csrf_token

    def close_session(self, token: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(SessionRow).where(SessionRow.token_sha256 == token_sha256(token)))

    # -- API keys ---------------------------------------------------------------------
    def add_api_key(
        self,
        username: str,
        name: str,
        scopes: Iterable[Scope | str] = DEFAULT_KEY_SCOPES,
        stations: Iterable[str] | None = None,
    ) -> tuple[int, str]:
        """A new key for ``username`` limited to ``scopes`` (and, given ``stations``, to acting
        for those stations only): (id, the key). The key is shown this once."""
        try:
            chosen = sorted({Scope(x) for x in scopes})
        except ValueError as exc:
            raise AccountError(
                Message("unknown scope: {exc}; choose from {scopes}", exc=exc, scopes=", ".join(Scope))
            ) from exc
        if not chosen:
            raise AccountError(Message("an API key needs at least one scope"))
        limited = None if stations is None else sorted(set(stations))
        if limited is not None:
            check_key_stations(limited, chosen)
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            user = s.scalar(select(UserRow).where(UserRow.username == unicodedata.normalize("NFC", username)))
            if user is None:
                raise AccountError(Message("no user '{username}'", username=username))
            row = ApiKeyRow(
                user_id=user.id,
                name=name,
                prefix=key[:10],
                key_sha256=token_sha256(key),
                created_at=utcnow(),
                revoked=False,
                scopes=",".join(chosen),
                stations=limited,
            )
            s.add(row)
            s.flush()
            return row.id, key

    def api_keys(self) -> list[dict[str, object]]:
        with Session(self.engine) as s:
            rows = s.execute(select(ApiKeyRow, UserRow.username).join(UserRow).order_by(ApiKeyRow.id)).all()
            return [
                {
                    "id": k.id,
                    "name": k.name,
                    "prefix": k.prefix,
                    "username": username,
                    "created_at": as_utc(k.created_at),
                    "last_used_at": None if k.last_used_at is None else as_utc(k.last_used_at),
                    "revoked": k.revoked,
                    "scopes": sorted(parse_scopes(k.scopes)),
                    "stations": k.stations,
                }
                for k, username in rows
            ]

    def revoke_api_key(self, key_id: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise AccountError(Message("no API key {key_id}", key_id=key_id))
            row.revoked = True

    def api_key_user(self, key: str) -> ApiKey | None:
        """The key, if valid and unrevoked and its user active.

        While the database is unreachable, a key checked in the last ``OUTAGE_GRACE``
        still works: a camera gateway must keep uploading parts through an outage."""
        digest = token_sha256(key)
        try:
            found = self._api_key_user(digest)
        except UNAVAILABLE:
            seen = self._seen_keys.get(digest)
            if seen is None or time.monotonic() - seen[1] > OUTAGE_GRACE_S:
                raise
            return seen[0]
        if found is None:
            self._seen_keys.pop(digest, None)
        else:
            self._seen_keys[digest] = (found, time.monotonic())
        return found

    def _api_key_user(self, digest: str) -> ApiKey | None:
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_sha256 == digest))
            if row is None or row.revoked:
                return None
            user = s.get(UserRow, row.user_id)
            if user is None or not user.active:
                return None
            now = utcnow()
            # At most once a minute: a camera gateway's every upload need not be a write.
            if row.last_used_at is None or now - as_utc(row.last_used_at) > LAST_USED_EVERY:
                row.last_used_at = now
            stations = None if row.stations is None else frozenset(row.stations)
            return ApiKey(_user(user), row.id, parse_scopes(row.scopes), stations)
