"""Ids in paths beyond the 32-bit columns, or written with a leading zero, name
nothing, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from core.web import ID_MAX, IdConvertor
from server import create_app
from signaling.routes import parse_live_id


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path, secret_key="k" * 40))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


@pytest.mark.parametrize(
    "path",
    [
        f"/lives/{ID_MAX + 1}",
        f"/api/lives/{ID_MAX + 1}/recording",
        f"/api/lives/{ID_MAX + 1}/replay",
        "/lives/9999999999/replay",
        f"/recordings/{ID_MAX + 1}/video.mp4",
        "/lives/" + "9" * 5000,
        "/lives/0",
        "/lives/01",
        "/api/lives/001/recording",
    ],
)
async def test_oversized_id_path_not_found(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"accept": "application/json"})
    assert response.status_code in {401, 404}
    assert response.status_code != 500


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (str(ID_MAX), ID_MAX), (str(ID_MAX + 1), None), ("012", None), ("", None)],
)
def test_signaling_live_id_bounds(raw: str, expected: int | None) -> None:
    assert parse_live_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", 1), (str(ID_MAX), ID_MAX), (str(ID_MAX + 1), 0), ("9999999999", 0)]
)
def test_id_convertor_maps_overflow_to_zero(raw: str, expected: int) -> None:
    assert IdConvertor().convert(raw) == expected
