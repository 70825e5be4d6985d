"""Grant or revoke a role from the command line; the operator role opens the mentoring
batch page.

    python -m accounts.roles grant claire@example.org operator --data-dir /srv/veillee
    python -m accounts.roles revoke claire@example.org --data-dir /srv/veillee
    python -m accounts.roles list --data-dir /srv/veillee
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from sqlalchemy import select

from accounts.models import Role, User
from accounts.service import normalize_email
from core.database import Database
from core.settings import DEFAULT_DATA_DIR, Settings
from migrations.runner import upgrade_to_head

logger = logging.getLogger(__name__)


class RoleError(Exception):
    """A role change that cannot be made; `message` is French, for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def set_role(database: Database, email: str, role: Role) -> User:
    """Give the account with `email` the role `role`; raise RoleError when there is none."""
    async with database.session() as session, session.begin():
        user = await session.scalar(select(User).where(User.email == normalize_email(email)))
        if user is None:
            raise RoleError(
                f"Aucun compte n'a l'adresse {email}. Vérifiez l'adresse, ou créez d'abord "
                "le compte depuis la page d'inscription."
            )
        previous = user.role
        user.role = role
    logger.info("role of user=%s: %s -> %s", user.id, previous.value, role.value)
    return user


async def list_role(database: Database, role: Role) -> list[User]:
    async with database.session() as session:
        rows = await session.scalars(select(User).where(User.role == role).order_by(User.email))
        return list(rows)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    # The database options go after the subcommand, as in the module docstring.
    database_options = argparse.ArgumentParser(add_help=False)
    database_options.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", DEFAULT_DATA_DIR)),
        help="the server's data folder, which contains the SQLite file (default: %(default)s)",
    )
    database_options.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy async URL (default: SQLite in --data-dir)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m accounts.roles", description="Grant, revoke or list account roles."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant", parents=[database_options], help="give an account a role")
    grant.add_argument("email")
    grant.add_argument("role", choices=[role.value for role in Role])
    revoke = commands.add_parser(
        "revoke", parents=[database_options], help="make an account a plain teacher again"
    )
    revoke.add_argument("email")
    commands.add_parser("list", parents=[database_options], help="list the operators")
    return parser.parse_args(argv)


async def _run(arguments: argparse.Namespace) -> int:
    settings = Settings(data_dir=arguments.data_dir, database_url=arguments.database_url)
    database = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(database, settings.data_dir)
        if arguments.command == "list":
            operators = await list_role(database, Role.OPERATOR)
            for user in operators:
                print(f"{user.email}\t{user.display_name}")
            if not operators:
                print("Aucun compte n'a le rôle operator.")
            return 0
        role = Role(arguments.role) if arguments.command == "grant" else Role.TEACHER
        try:
            user = await set_role(database, arguments.email, role)
        except RoleError as error:
            print(error.message, file=sys.stderr)
            return 1
        print(f"{user.email} a maintenant le rôle {role.value}.")
        return 0
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not arguments.data_dir.is_dir() and arguments.database_url is None:
        print(
            f"python -m accounts.roles: no data folder at {arguments.data_dir}; "
            "pass the server's --data-dir",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_run(arguments))


if __name__ == "__main__":
    sys.exit(main())
