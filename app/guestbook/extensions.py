"""Extension singletons, bound to an app later with init_app() so there are no import cycles."""

from pathlib import Path

from flask_caching import Cache
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from .headers import CachedTalisman

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")

db = SQLAlchemy()
# The migrations ship inside the package, so `flask db upgrade` works from any working directory.
migrate = Migrate(directory=MIGRATIONS_DIR)
cache = Cache()
csrf = CSRFProtect()
talisman = CachedTalisman()
