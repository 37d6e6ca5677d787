"""The pure side of flaskops.postgres: passwords, URLs, the Secret's keys, names and stamps, with plain data."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from flaskops import names, ownership
from flaskops.postgres.naming import default_names, parse_stamp, stamp_for
from flaskops.postgres.server import AdminConnection, drop_database, ensure_database, generate_password
from flaskops.postgres.url import DatabaseIdentity, database_url, db_secret_data, parse_database_url

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
NASTY = "p@ss:w/rd?x#y%z &+=é'\""


def test_generated_passwords_are_long_random_and_url_safe() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) >= 40
        assert re.fullmatch(r"[A-Za-z0-9_-]+", password)


@pytest.mark.parametrize("password", [NASTY, "@", ":", "/", "?", "#", "%", "%40", "plain"])
def test_password_is_escaped_in_the_url_and_round_trips(password: str) -> None:
    url = database_url("db.example", 5432, "shop__guestbook", "shop__guestbook", password, "require")
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert parts.hostname == "db.example"
    assert parts.port == 5432
    assert unquote(parts.password or "") == password
    assert parts.query == "sslmode=require"
    # libpq's own parser agrees, not only urllib.
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert info["password"] == password
    assert info["user"] == "shop__guestbook"
    assert info["dbname"] == "shop__guestbook"
    assert info["host"] == "db.example"
    assert info["sslmode"] == "require"


def test_url_escapes_user_and_database_and_brackets_ipv6() -> None:
    url = database_url("::1", 6543, "my db/x", "us@er:1", "pw", "disable")
    assert url.startswith("postgresql://us%40er%3A1:pw@[::1]:6543/my%20db%2Fx?")
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert (info["host"], info["port"], info["dbname"], info["user"]) == ("::1", "6543", "my db/x", "us@er:1")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("", 5432, "db", "u", "p", "prefer"), "host"),
        (("h", 0, "db", "u", "p", "prefer"), "port"),
        (("h", 70000, "db", "u", "p", "prefer"), "port"),
        (("h", 5432, "", "u", "p", "prefer"), "name"),
        (("h", 5432, "db", "", "p", "prefer"), "user"),
        (("h", 5432, "db", "u", "p", "sometimes"), "sslMode"),
    ],
)
def test_url_refuses_bad_parts(args: tuple[str, int, str, str, str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        database_url(*args)


def test_secret_has_exactly_the_contract_keys_and_they_agree() -> None:
    data = db_secret_data("pg.svc", 5433, "shop__guestbook", "shop__gb", NASTY, "verify-full")
    assert list(data) == list(names.DB_SECRET_KEYS)
    assert all(isinstance(v, str) for v in data.values())
    assert data["DATABASE_URL"] == data["uri"]
    assert data["PGHOST"] == data["host"] == "pg.svc"
    assert data["PGPORT"] == data["port"] == "5433"
    assert data["PGDATABASE"] == data["dbname"] == "shop__guestbook"
    assert data["PGUSER"] == data["user"] == data["username"] == "shop__gb"
    assert data["PGPASSWORD"] == data["password"] == NASTY
    info = psycopg.conninfo.conninfo_to_dict(data["DATABASE_URL"])
    assert info == {
        "host": "pg.svc",
        "port": "5433",
        "dbname": "shop__guestbook",
        "user": "shop__gb",
        "password": NASTY,
        "sslmode": "verify-full",
    }
    assert parse_database_url(data["DATABASE_URL"]) == DatabaseIdentity(
        "pg.svc", 5433, "shop__guestbook", "shop__gb"
    )


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("postgresql://u:p@h:5433/db", DatabaseIdentity("h", 5433, "db", "u")),
        ("postgres://u@h/db", DatabaseIdentity("h", 5432, "db", "u")),
        ("postgresql+psycopg://u:p@h/db?sslmode=require", DatabaseIdentity("h", 5432, "db", "u")),
        ("postgresql+psycopg2://u:p%40x@H.Example:1/db", DatabaseIdentity("h.example", 1, "db", "u")),
        ("POSTGRESQL://u:p@h/db", DatabaseIdentity("h", 5432, "db", "u")),
        ("postgresql://us%40er:p@[::1]:6000/my%20db", DatabaseIdentity("::1", 6000, "my db", "us@er")),
        ("postgresql:///db?host=pg.svc&port=6432&user=u", DatabaseIdentity("pg.svc", 6432, "db", "u")),
        ("postgresql://u:p@h?dbname=db", DatabaseIdentity("h", 5432, "db", "u")),
        ("  postgresql://u:p@h/db\n", DatabaseIdentity("h", 5432, "db", "u")),
    ],
)
def test_parse_database_url(url: str, identity: DatabaseIdentity) -> None:
    assert parse_database_url(url) == identity


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "empty"),
        ("mysql://u:secretpw@h/db", "scheme 'mysql'"),
        ("u:secretpw@h/db", "scheme"),
        ("postgresql+://u:secretpw@h/db", "scheme"),
        ("postgresql://u:secretpw@/db", "no host"),
        ("postgresql://u:secretpw@h1,h2/db", "several hosts"),
        ("postgresql://u:secretpw@h:port/db", "port"),
        ("postgresql://u:secretpw@h:99999/db", "port"),
        ("postgresql://u:secretpw@h:0/db", "port"),
        ("postgresql://h/db", "no user"),
        ("postgresql://u:secretpw@h", "no database name"),
        ("postgresql://u:secretpw@h/", "no database name"),
        ("postgresql:///db?host=/var/run/postgresql&user=u", "Unix socket"),
    ],
)
def test_parse_database_url_says_what_is_wrong_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)) as info:
        parse_database_url(url)
    assert "secretpw" not in str(info.value)


@pytest.mark.parametrize(
    ("namespace", "app", "expected"),
    [
        ("shop", "guestbook", "shop__guestbook"),
        ("flaskops-system", "my-app", "flaskops_system__my_app"),
        ("default", "a1", "default__a1"),
    ],
)
def test_default_names_are_readable_when_unambiguous(namespace: str, app: str, expected: str) -> None:
    assert default_names(namespace, app) == (expected, expected)


@pytest.mark.parametrize(
    ("namespace", "app"),
    [
        ("shop", "guestbook"),
        ("a" * 63, "b" * 253),
        ("1shop", "app"),
        ("pg", "app"),
        ("shop", "my.app"),
        ("x--y", "app"),
        ("Shop", "App"),
        ("ns", "ä-ö"),
    ],
)
def test_default_names_are_valid_identifiers(namespace: str, app: str) -> None:
    dbname, role = default_names(namespace, app)
    assert dbname == role
    assert IDENTIFIER.match(dbname), dbname
    assert len(dbname.encode()) <= 63
    assert not dbname.startswith("pg_")
    assert default_names(namespace, app) == (dbname, role)  # deterministic


def test_default_names_never_collide() -> None:
    pairs = [
        ("a-b", "c"),
        ("a", "b-c"),
        ("a", "b.c"),
        ("a", "b-c-"),
        ("x--y", "z"),
        ("x", "y--z"),
        ("x-", "-y"),
        ("pg", "app"),
        ("_pg", "app"),
        ("1a", "b"),
        ("_1a", "b"),
        ("long-" * 12 + "a", "app-one"),
        ("long-" * 12 + "a", "app-two"),
        ("n", "z" * 200 + "1"),
        ("n", "z" * 200 + "2"),
    ]
    derived = [default_names(ns, app)[0] for ns, app in pairs]
    assert len(set(derived)) == len(pairs), derived


def test_long_names_are_truncated_with_a_hash_and_keep_their_head() -> None:
    dbname, _ = default_names("production-" + "x" * 80, "guestbook")
    assert len(dbname) == 63
    assert dbname.startswith("production_xxx")
    assert re.search(r"_[0-9a-f]{8}$", dbname)


def test_default_names_refuse_empty_parts() -> None:
    with pytest.raises(ValueError, match="empty"):
        default_names("", "app")


@pytest.mark.parametrize("environment", names.ENVIRONMENTS)
def test_stamp_round_trips(environment: str) -> None:
    stamp = stamp_for(environment)
    assert stamp.startswith(names.DATABASE_STAMP_PREFIX)
    assert parse_stamp(stamp) == environment
    assert parse_stamp(f"the shop's main database\n{stamp}") == environment


@pytest.mark.parametrize("comment", [None, "", "a comment somebody wrote", names.DATABASE_STAMP_PREFIX])
def test_parse_stamp_without_a_stamp(comment: str | None) -> None:
    assert parse_stamp(comment) is None


def test_stamp_for_refuses_unknown_environment() -> None:
    with pytest.raises(ValueError, match="staging"):
        stamp_for("staging")


def test_admin_password_never_shows_in_repr() -> None:
    admin = AdminConnection("h", 5432, "prefer", "admin", "hunter2-secret")
    assert "hunter2-secret" not in repr(admin)


NOWHERE = AdminConnection("127.0.0.1", 1, "disable", "postgres", "pw")


@pytest.mark.parametrize(
    ("dbname", "role", "password", "environment", "needle"),
    [
        ("", "r", "pw", "testing", "database name"),
        ("d" * 64, "r", "pw", "testing", "database name"),
        ("d", "é" * 32, "pw", "testing", "role name"),
        ("d", "r", "", "testing", "password"),
        ("d", "r", "pw", "staging", "environment"),
    ],
)
def test_ensure_database_refuses_bad_arguments_before_connecting(
    dbname: str, role: str, password: str, environment: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        claim = ownership.Claim(ownership.Owner("shop", "gb", "uid", environment), dbname, role)
        ensure_database(NOWHERE, claim, password, set_password=False)


def test_drop_database_refuses_bad_names_before_connecting() -> None:
    with pytest.raises(ValueError, match="role name"):
        drop_database(NOWHERE, ownership.Owner("shop", "gb", "uid", "testing"), "d", "")
