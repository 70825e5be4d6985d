"""Import every package's tables so that Base.metadata is complete for Alembic."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from core.database import Base

# Every module that defines tables; a new domain package adds its models here.
MODEL_MODULES = (
    "accounts.models",
    "live.models",
    "chat.models",
    "recordings.models",
    "mentoring.models",
)


def load_metadata() -> MetaData:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base.metadata
