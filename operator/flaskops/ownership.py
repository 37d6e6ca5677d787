"""Who owns a PostgreSQL role or database: the record the operator stamps, and the one decision on it.

The operator holds the PostgresServer admin's power; a tenant names a database in a FlaskApp. A name
match is never ownership. The operator creates, alters, grants, revokes, hands out or drops a role or
database only when the ownership record it wrote at creation (a `COMMENT ON ROLE/DATABASE`, see
`record_comment`) names this app — or, for a role and database it did not create, when both the tenant
(`spec.database.adoptExisting`) and the cluster admin (the PostgresServer's `adoptableDatabases`) say so.

Everything here is pure: facts read from the server go in, a `Plan` or a `Refusal` comes out.
Reserved names follow PostgreSQL's documentation:
- roles named `pg_*` are reserved for predefined roles ("Predefined Roles", CREATE ROLE);
- `public`, `none`, `current_user`, `current_role`, `session_user` are role names the grammar reserves
  (CREATE ROLE refuses them);
- `postgres` is the default superuser and maintenance database initdb creates ("Creating a Database
  Cluster", "Template Databases"), `template0`/`template1` are the template databases;
- the system roles and databases of the managed services people run PostgreSQL on (Amazon RDS,
  Google Cloud SQL, Azure, AlloyDB) are reserved too, because their admins are privileged there.
At reconcile the server adds its own facts: the admin role, every template database, and any role with
SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS is reserved whatever its name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from . import names

RESERVED_DATABASES = frozenset(
    {
        "postgres",
        "template0",
        "template1",
        # Amazon RDS, Google Cloud SQL, Azure Database for PostgreSQL
        "rdsadmin",
        "cloudsqladmin",
        "azure_maintenance",
        "azure_sys",
    }
)
RESERVED_ROLES = frozenset(
    {
        "postgres",
        "public",
        "none",
        "current_user",
        "current_role",
        "session_user",
        # Amazon RDS / Aurora
        "rdsadmin",
        "rds_superuser",
        "rds_replication",
        "rds_password",
        "rdsrepladmin",
        "rdstopmgr",
        # Google Cloud SQL / AlloyDB
        "cloudsqladmin",
        "cloudsqlsuperuser",
        "cloudsqlreplica",
        "cloudsqlagent",
        "alloydbadmin",
        "alloydbsuperuser",
        # Azure Database for PostgreSQL
        "azure_superuser",
        "azure_pg_admin",
        "azuresu",
        "replication",
    }
)
RESERVED_ROLE_PREFIX = "pg_"

# Reasons on the DatabaseReady condition (one source of truth with the README's troubleshooting table).
RESERVED_NAME = "ReservedName"
ROLE_OWNED_ELSEWHERE = "RoleOwnedElsewhere"
DATABASE_OWNED_ELSEWHERE = "DatabaseOwnedElsewhere"
REFUSAL_REASONS = (RESERVED_NAME, ROLE_OWNED_ELSEWHERE, DATABASE_OWNED_ELSEWHERE)

_RECORD_PREFIX = "flaskops:"
_OWNER_KEY = "owner"
_UID_KEY = "uid"
_ENVIRONMENT_KEY = "environment"
# The keys the operator writes; anything else in a comment (a person's note) is kept as it is.
_RECORD_KEYS = (_ENVIRONMENT_KEY, _OWNER_KEY, _UID_KEY)


@dataclass(frozen=True)
class Owner:
    """The FlaskApp that claims a role and database: its identity and environment."""

    namespace: str
    name: str
    uid: str
    environment: str


@dataclass(frozen=True)
class Record:
    """An ownership record read from a comment; every field is None when the comment lacks it.

    `owner` is `digest("<namespace>/<name>")` and `uid` is `digest(<FlaskApp UID>)`, not the values
    themselves: any login on the server can read comments (shobj_description), and the record must not
    list other tenants' namespaces, apps or UIDs.
    """

    environment: str | None = None
    owner: str | None = None
    uid: str | None = None

    @property
    def complete(self) -> bool:
        """Only a record with all three lines is ownership: flaskops never writes one line alone, and a
        database's owner can write lines on its own database."""
        return self.environment is not None and self.owner is not None and self.uid is not None

    @property
    def legacy(self) -> bool:
        """What flaskops 0.1 wrote on a database: the environment line only."""
        return self.environment is not None and self.owner is None and self.uid is None


def digest(value: str) -> str:
    """A record line's value: a SHA-256 prefix (128 bits), so a record names no tenant in the clear."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def owner_digest(namespace: str, name: str) -> str:
    """The owner line's value for a FlaskApp namespace/name."""
    return digest(f"{namespace}/{name}")


@dataclass(frozen=True)
class RoleFacts:
    """A role as the server describes it (pg_roles, pg_auth_members, shobj_description)."""

    name: str
    superuser: bool = False
    createrole: bool = False
    createdb: bool = False
    replication: bool = False
    bypassrls: bool = False
    member_of: tuple[str, ...] = ()
    comment: str | None = None

    @property
    def privileged(self) -> bool:
        return self.superuser or self.createrole or self.createdb or self.replication or self.bypassrls


@dataclass(frozen=True)
class DatabaseFacts:
    """A database as the server describes it (pg_database, shobj_description)."""

    name: str
    owner: str
    comment: str | None = None
    is_template: bool = False


@dataclass(frozen=True)
class Claim:
    """What an app asks for: its role and database on one server, and whether it may adopt them.

    `adopt` is the tenant's opt-in (spec.database.adoptExisting); `adoptable` is the cluster admin's
    consent (the PostgresServer lists this database for the app's namespace in adoptableDatabases).
    """

    owner: Owner
    dbname: str
    role: str
    adopt: bool = False
    adoptable: bool = False
    # Set by the caller after the app's own Secret's password logged in as the role: it provisioned
    # these before ownership records existed (flaskops 0.1) and so may take them up again.
    proven: bool = False
    # Whether the app's status — written only by the operator, through the status subresource — already
    # names this role and database: the only case in which the 0.1 proof above is even tried. A Secret
    # alone is the tenant's to write, so it proves nothing about who provisioned the role.
    provisioned_before: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why the operator will not touch a role or database: a condition reason and a tenant-safe message."""

    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What provisioning may do. Each of role/database is `create`, `own` (ours already), `reattach`
    (ours before the app was deleted and re-created under the same namespace/name) or `adopt`."""

    role: str
    database: str

    @property
    def adopting(self) -> bool:
        return "adopt" in (self.role, self.database)


# --- the record ------------------------------------------------------------------------------------------


def parse_record(comment: str | None) -> Record:
    """The ownership record in a role's or database's comment (lines `flaskops:<key>=<value>`)."""
    found: dict[str, str] = {}
    for line in (comment or "").splitlines():
        line = line.strip()
        if not line.startswith(_RECORD_PREFIX):
            continue
        key, sep, value = line[len(_RECORD_PREFIX) :].partition("=")
        if sep and key in _RECORD_KEYS and key not in found:
            found[key] = value.strip()
    return Record(
        environment=found.get(_ENVIRONMENT_KEY) or None,
        owner=found.get(_OWNER_KEY) or None,
        uid=found.get(_UID_KEY) or None,
    )


def record_comment(owner: Owner, previous: str | None = None) -> str:
    """The comment to write: the record for `owner`, after any lines a person wrote that are not ours."""
    if owner.environment not in names.ENVIRONMENTS:
        raise ValueError(f"environment {owner.environment!r} is not one of {', '.join(names.ENVIRONMENTS)}")
    kept = [
        line
        for line in (previous or "").splitlines()
        if line.strip() and not line.strip().startswith(_RECORD_PREFIX)
    ]
    ours = [
        f"{_RECORD_PREFIX}{_ENVIRONMENT_KEY}={owner.environment}",
        f"{_RECORD_PREFIX}{_OWNER_KEY}={owner_digest(owner.namespace, owner.name)}",
        f"{_RECORD_PREFIX}{_UID_KEY}={digest(owner.uid)}",
    ]
    return "\n".join(kept + ours)


# --- the decisions ---------------------------------------------------------------------------------------


def reserved_role(role: str) -> bool:
    """Whether a role name is reserved whatever the server says (see the module docstring)."""
    lowered = role.lower()
    return lowered in RESERVED_ROLES or lowered.startswith(RESERVED_ROLE_PREFIX)


def reserved_database(dbname: str) -> bool:
    """Whether a database name is reserved whatever the server says (see the module docstring)."""
    return dbname.lower() in RESERVED_DATABASES


def reserved_names(dbname: str, role: str) -> Refusal | None:
    """The refusal for a database or role name that is reserved by name alone (admission and reconcile)."""
    if reserved_database(dbname):
        return _reserved("database", dbname)
    if reserved_role(role):
        return _reserved("role", role)
    return None


def _reserved(what: str, value: str) -> Refusal:
    # The same words for every reserved kind, so a tenant learns nothing of which role is the admin.
    return Refusal(
        RESERVED_NAME,
        f"{what} '{value}' is reserved (a system, template, administrative or privileged {what}); "
        "flaskops never touches it — choose another spec.database.name",
    )


def reserved_on_server(
    dbname: str,
    role_name: str,
    role: RoleFacts | None,
    database: DatabaseFacts | None,
    *,
    admin_user: str,
    maintenance_db: str,
) -> Refusal | None:
    """The refusal for a name reserved by name, or by what the server says of it (rule 1 of `decide`)."""
    refusal = reserved_names(dbname, role_name)
    if refusal is None and (role_name == admin_user or (role is not None and role.privileged)):
        refusal = _reserved("role", role_name)
    if refusal is None and (dbname == maintenance_db or (database is not None and database.is_template)):
        refusal = _reserved("database", dbname)
    return refusal


def _relation(record: Record, owner: Owner) -> str:
    """How an existing object's record relates to the app: own | reattach | other | unowned."""
    if not record.complete:
        return "unowned"
    if record.uid == digest(owner.uid) and record.owner == owner_digest(owner.namespace, owner.name):
        return "own"
    if record.owner == owner_digest(owner.namespace, owner.name):
        # Kept by deletionPolicy Retain, claimed again by the same namespace/name: what Retain is for.
        return "reattach"
    return "other"


def decide(
    claim: Claim,
    role: RoleFacts | None,
    database: DatabaseFacts | None,
    *,
    admin_user: str,
    maintenance_db: str,
) -> Plan | Refusal:
    """Whether provisioning may go on, and how; the first rule that refuses wins.

    1. Reserved by name, the admin role, the maintenance database, a template database, or a role with
       any of SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS → ReservedName.
    2. A database owned by another role than the app's → DatabaseOwnedElsewhere.
    3. A role or database whose record names another app → Role/DatabaseOwnedElsewhere (never adoptable).
    4. A role or database without a record (made by hand, or by something else) → adopted only when the
       tenant opted in and the cluster admin listed it, and only a plain role (no role memberships);
       otherwise Role/DatabaseOwnedElsewhere.
    Environment mismatches (rule S6) are judged by `safety.check_pairing` from the record's environment.
    """
    refusal = reserved_on_server(
        claim.dbname, claim.role, role, database, admin_user=admin_user, maintenance_db=maintenance_db
    )
    if refusal is not None:
        return refusal
    if database is not None and database.owner != claim.role:
        return Refusal(
            DATABASE_OWNED_ELSEWHERE,
            f"database '{claim.dbname}' exists and belongs to another role; flaskops does not touch it — "
            "choose another spec.database.name, or use spec.database.existingSecret",
        )
    legacy = claim.proven and (
        database is None or parse_record(database.comment).legacy or not database.comment
    )
    role_plan: str | Refusal = "create"
    if role is not None:
        relation = _relation(parse_record(role.comment), claim.owner)
        if relation == "unowned" and legacy and not role.comment:
            relation = "reattach"
        role_plan = _existing("role", claim.role, relation, claim)
        if isinstance(role_plan, Refusal):
            return role_plan
        if role_plan == "adopt" and role.member_of:
            return Refusal(
                ROLE_OWNED_ELSEWHERE,
                f"role '{claim.role}' is a member of other roles; flaskops adopts only a plain login role",
            )
    db_plan: str | Refusal = "create"
    if database is not None:
        relation = _relation(parse_record(database.comment), claim.owner)
        if relation == "unowned" and legacy:
            relation = "reattach"
        db_plan = _existing("database", claim.dbname, relation, claim)
        if isinstance(db_plan, Refusal):
            return db_plan
    assert isinstance(role_plan, str) and isinstance(db_plan, str)
    return Plan(role=role_plan, database=db_plan)


def _existing(what: str, value: str, relation: str, claim: Claim) -> str | Refusal:
    reason = ROLE_OWNED_ELSEWHERE if what == "role" else DATABASE_OWNED_ELSEWHERE
    if relation in ("own", "reattach"):
        return relation
    if relation == "other":
        return Refusal(
            reason,
            f"{what} '{value}' belongs to another FlaskApp; choose another spec.database.name",
        )
    if claim.adopt and claim.adoptable:
        return "adopt"
    hint = (
        "the PostgresServer does not list it in adoptableDatabases for this namespace (ask the cluster admin)"
        if claim.adopt
        else "set spec.database.adoptExisting: true to adopt it (the cluster admin must also list it in "
        "the PostgresServer's adoptableDatabases), or use spec.database.existingSecret"
    )
    return Refusal(reason, f"{what} '{value}' exists and was not created by flaskops for this app; {hint}")


def may_drop(
    owner: Owner,
    dbname: str,
    role_name: str,
    role: RoleFacts | None,
    database: DatabaseFacts | None,
    *,
    admin_user: str,
    maintenance_db: str,
) -> tuple[bool, bool] | Refusal:
    """What a deletion may drop: (drop the database, drop the role), or why it must drop nothing.

    Only what carries this app's exact UID in its record: a re-created app re-attached (and re-stamped)
    what it uses, so an old record never lets a newcomer drop anything.
    """
    refusal = reserved_on_server(
        dbname, role_name, role, database, admin_user=admin_user, maintenance_db=maintenance_db
    )
    if refusal is not None:
        return refusal
    if database is not None and (
        database.owner != role_name or _relation(parse_record(database.comment), owner) != "own"
    ):
        return Refusal(
            DATABASE_OWNED_ELSEWHERE,
            f"database '{dbname}' is not recorded as this app's; refusing to drop it",
        )
    drop_role = role is not None and _relation(parse_record(role.comment), owner) == "own"
    if role is not None and not drop_role and database is not None:
        return Refusal(
            ROLE_OWNED_ELSEWHERE, f"role '{role_name}' is not recorded as this app's; refusing to drop it"
        )
    return database is not None, drop_role


def all_reserved() -> Iterable[str]:
    """Every name reserved by name alone, for the README and its drift test."""
    return sorted(RESERVED_DATABASES | RESERVED_ROLES)
