"""The recordings package as server.py wires it: recovery at start, finishing awaited
at shutdown, routes mounted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

import server
from core.database import utc_now
from live.models import Live, LiveState
from recordings import service
from recordings.models import Recording, RecordingStatus
from tests.support.recording_setup import (
    create_live,
    create_member,
    open_database,
    recording_settings,
    write_synthetic_raw,
)


async def test_server_start_recovers_recording(data_dir: Path) -> None:
    """Guards against a server that starts without finishing the recording its previous
    process left behind, or that stops before the finishing it started is done."""
    settings = recording_settings(data_dir)
    database = await open_database(settings)
    host = await create_member(database, "claire@example.org", "Claire")
    live = await create_live(database, host, LiveState.LIVE)
    recording_id, raw_path = await service.begin_recording(database, settings, live.id)
    write_synthetic_raw(raw_path, utc_now() - timedelta(minutes=1))

    app = server.create_app(settings)
    async with app.router.lifespan_context(app):
        async with database.session() as session:
            restarted_live = await session.get(Live, live.id)
        assert restarted_live is not None
        assert restarted_live.state is LiveState.INTERRUPTED

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get(f"/api/lives/{live.id}/recording")
        # mounted, and behind the log-in like every recording route
        assert response.status_code == 401

    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
    await database.dispose()
    assert recording is not None
    assert recording.status is RecordingStatus.READY
