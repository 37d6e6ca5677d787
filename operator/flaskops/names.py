"""The names of the contract: API group, kinds, conditions, labels, Secret keys — defined once."""

from __future__ import annotations

GROUP = "flaskops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

FLASKAPP_KIND = "FlaskApp"
FLASKAPP_PLURAL = "flaskapps"
POSTGRESSERVER_KIND = "PostgresServer"
POSTGRESSERVER_PLURAL = "postgresservers"

ENVIRONMENTS = ("development", "testing", "production")

# Condition types (metav1.Condition). Ready is the summary; Reconciling/Stalled are kstatus.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ENVIRONMENT_SAFE = "EnvironmentSafe"
DATABASE_READY = "DatabaseReady"
MIGRATED = "Migrated"
AVAILABLE = "Available"
CONDITION_TYPES = (READY, RECONCILING, STALLED, ENVIRONMENT_SAFE, DATABASE_READY, MIGRATED, AVAILABLE)

# Labels on every child; the operator watches children by these.
LABEL_PREFIX = GROUP
LABEL_APP = f"{LABEL_PREFIX}/app"  # value: FlaskApp name
LABEL_COMPONENT = f"{LABEL_PREFIX}/component"  # web | migration | db-credentials | secret-key
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "flaskops"

# Annotations.
ANNOTATION_PREFIX = GROUP
ANNOTATION_SECRETS_CHECKSUM = f"{ANNOTATION_PREFIX}/secrets-checksum"
ANNOTATION_MIGRATION_IMAGE = f"{ANNOTATION_PREFIX}/image"
# On the Deployment (not its pods): digest of the pod template without the default topology spread.
ANNOTATION_BASE_TEMPLATE = f"{ANNOTATION_PREFIX}/base-template-hash"
FINALIZER = f"{GROUP}/database"

# Secret <app>-db: the universal URL, libpq variables, and CloudNativePG-compatible keys.
DB_SECRET_SUFFIX = "-db"
DB_SECRET_KEYS = (
    "DATABASE_URL",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "uri",
    "host",
    "port",
    "dbname",
    "user",
    "username",
    "password",
)
# Secret <app>-secret-key: Flask's signing key and, after a rotation, the old ones.
SECRET_KEY_SECRET_SUFFIX = "-secret-key"
SECRET_KEY = "SECRET_KEY"
SECRET_KEY_FALLBACKS = "SECRET_KEY_FALLBACKS"

# PostgresServer admin Secret keys.
ADMIN_USERNAME_KEY = "username"
ADMIN_PASSWORD_KEY = "password"

# The stamp the operator writes on every database it provisions (COMMENT ON DATABASE), checked by S6.
DATABASE_STAMP_PREFIX = "flaskops:environment="


def db_secret_name(app: str) -> str:
    """Name of the Secret holding an app's database credentials."""
    return f"{app}{DB_SECRET_SUFFIX}"


def secret_key_secret_name(app: str) -> str:
    """Name of the Secret holding an app's Flask SECRET_KEY."""
    return f"{app}{SECRET_KEY_SECRET_SUFFIX}"
