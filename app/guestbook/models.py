"""Database models. The migrations in migrations/versions must produce exactly this schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db

AUTHOR_MAX = 80
MESSAGE_MAX = 1000
ID_MAX = 2**31 - 1  # entries.id is a PostgreSQL integer (int4)


class Entry(db.Model):  # type: ignore[name-defined]
    """One guestbook entry."""

    __tablename__ = "entries"
    __table_args__ = (Index("ix_entries_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
