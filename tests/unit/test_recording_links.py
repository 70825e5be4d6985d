"""Signed, expiring links to recording files."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from recordings.links import (
    SIGNED_LINK_LIFETIME_SECS,
    LinkProblem,
    RecordingFile,
    check_link,
    signed_url,
)

SECRET = "secret-key-of-the-deployment"
NOW = 1_800_000_000.0


def query_of(url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(url).query)
    return query["expires"][0], query["signature"][0]


def test_signed_url_names_file_and_expiry() -> None:
    url = signed_url(SECRET, 12, RecordingFile.VIDEO, now=NOW)
    expires, _ = query_of(url)
    assert urlsplit(url).path == "/recordings/12/video.mp4"
    assert int(expires) == int(NOW) + SIGNED_LINK_LIFETIME_SECS


def test_check_link_accepts_fresh_link() -> None:
    expires, signature = query_of(signed_url(SECRET, 12, RecordingFile.VIDEO, now=NOW))
    assert check_link(SECRET, 12, RecordingFile.VIDEO, expires, signature, now=NOW) is None


def test_check_link_rejects_expired_link() -> None:
    expires, signature = query_of(signed_url(SECRET, 12, RecordingFile.VIDEO, now=NOW))
    later = NOW + SIGNED_LINK_LIFETIME_SECS
    problem = check_link(SECRET, 12, RecordingFile.VIDEO, expires, signature, now=later)
    assert problem is LinkProblem.EXPIRED


@pytest.mark.parametrize(
    ("recording_id", "file", "secret", "change_expires"),
    [
        pytest.param(13, RecordingFile.VIDEO, SECRET, False, id="other-recording"),
        pytest.param(12, RecordingFile.POSTER, SECRET, False, id="other-file"),
        pytest.param(12, RecordingFile.VIDEO, "another-secret", False, id="other-secret"),
        pytest.param(12, RecordingFile.VIDEO, SECRET, True, id="extended-expiry"),
    ],
)
def test_check_link_rejects_altered_link(
    recording_id: int, file: RecordingFile, secret: str, change_expires: bool
) -> None:
    expires, signature = query_of(signed_url(SECRET, 12, RecordingFile.VIDEO, now=NOW))
    if change_expires:
        expires = str(int(expires) + 86_400)
    problem = check_link(secret, recording_id, file, expires, signature, now=NOW)
    assert problem is LinkProblem.INVALID


@pytest.mark.parametrize(
    ("expires", "signature", "expected"),
    [
        pytest.param(None, "abc", LinkProblem.MISSING, id="no-expires"),
        pytest.param("1800000000", None, LinkProblem.MISSING, id="no-signature"),
        pytest.param("-5", "abc", LinkProblem.INVALID, id="negative-expires"),
        pytest.param("١٢٣", "abc", LinkProblem.INVALID, id="arabic-digits"),
        pytest.param("1800000000", "é", LinkProblem.INVALID, id="non-ascii-signature"),
    ],
)
def test_check_link_rejects_malformed_query(
    expires: str | None, signature: str | None, expected: LinkProblem
) -> None:
    problem = check_link(SECRET, 12, RecordingFile.VIDEO, expires, signature, now=NOW)
    assert problem is expected
