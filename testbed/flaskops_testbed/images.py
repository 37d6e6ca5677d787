"""The project's images as `make images` (testbed/images.sh) left them: names, sizes, one tarball.

images = load()              # raises ImagesNotBuiltError naming `make images` when absent
images.guestbook             # flaskops.local/guestbook:<key>  (Dockerfile --target app)
images.operator              # flaskops.local/flaskops:<key>   (Dockerfile --target operator)
images.broken_migration      # the guestbook plus a migration that exits non-zero
images.pause                 # the real node's sandbox image
images.tarball               # all four, `docker save` format, for the node's containerd
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flaskops_testbed import paths

BUILD_SCRIPT = paths.TESTBED_SRC / "images.sh"


class ImagesNotBuiltError(RuntimeError):
    """`make images` has not run for this tree (or its output was removed)."""


@dataclass(frozen=True)
class Images:
    guestbook: str
    operator: str
    broken_migration: str
    pause: str
    tarball: Path
    sizes: dict[str, int]

    def all(self) -> tuple[str, ...]:
        return (self.guestbook, self.operator, self.broken_migration, self.pause)


def images_dir() -> Path:
    return paths.cache_dir() / "images"


def load(directory: Path | None = None) -> Images:
    """The newest build (`images/current`), or the one in `directory`."""
    where = directory or images_dir() / "current"
    env_file, tarball = where / "images.env", where / "images.tar"
    if not env_file.is_file() or not tarball.is_file():
        raise ImagesNotBuiltError(
            f"no images in {where}: build them with `make images` (bash {BUILD_SCRIPT}); "
            "the first build takes a few minutes"
        )
    values = paths.parse_env_file(env_file)
    sizes = {k.removeprefix("SIZE_"): int(v) for k, v in values.items() if k.startswith("SIZE_")}
    return Images(
        guestbook=values["GUESTBOOK_IMAGE"],
        operator=values["OPERATOR_IMAGE"],
        broken_migration=values["BROKEN_MIGRATION_IMAGE"],
        pause=values["PAUSE_IMAGE"],
        tarball=tarball,
        sizes=sizes,
    )
