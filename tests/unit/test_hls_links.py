"""Signed, expiring path links to a live's HLS stream."""

from __future__ import annotations

import pytest

from recordings.links import LinkProblem, RecordingFile, signed_url
from signaling.hls_links import (
    HLS_FILE_NAME,
    HLS_LINK_LIFETIME_SECS,
    HLS_LINK_STEP_SECS,
    check_hls_link,
    hls_link_prefix,
    link_expiry,
)

SECRET = "secret-key-of-the-deployment"
# A multiple of HLS_LINK_STEP_SECS.
NOW = 1_800_000_000.0


def parts_of(prefix: str) -> tuple[str, str]:
    """Return the expires and signature segments of `/hls/<id>/<expires>/<signature>/`."""
    _, hls, _live_id, expires, signature, rest = prefix.split("/")
    assert hls == "hls"
    assert rest == ""
    return expires, signature


def test_link_prefix_names_live_and_expiry() -> None:
    prefix, expires = hls_link_prefix(SECRET, 12, now=NOW)
    assert prefix.startswith(f"/hls/12/{expires}/")
    assert prefix.endswith("/")
    assert parts_of(prefix)[0] == str(expires)


def test_link_expiry_lies_within_lifetime_and_step() -> None:
    for offset in (0.0, 1.0, HLS_LINK_STEP_SECS - 1.0):
        expires = link_expiry(NOW + offset)
        assert expires % HLS_LINK_STEP_SECS == 0
        assert expires - (NOW + offset) >= HLS_LINK_LIFETIME_SECS
        assert expires - (NOW + offset) <= HLS_LINK_LIFETIME_SECS + HLS_LINK_STEP_SECS


def test_links_within_one_step_are_equal() -> None:
    first, _ = hls_link_prefix(SECRET, 12, now=NOW + 1)
    last, _ = hls_link_prefix(SECRET, 12, now=NOW + HLS_LINK_STEP_SECS - 1)
    next_step, _ = hls_link_prefix(SECRET, 12, now=NOW + HLS_LINK_STEP_SECS)
    assert first == last
    assert next_step != first


def test_check_accepts_fresh_link() -> None:
    expires, signature = parts_of(hls_link_prefix(SECRET, 12, now=NOW)[0])
    assert check_hls_link(SECRET, 12, expires, signature, now=NOW) is None


def test_check_rejects_expired_link() -> None:
    prefix, expires_at = hls_link_prefix(SECRET, 12, now=NOW)
    expires, signature = parts_of(prefix)
    assert check_hls_link(SECRET, 12, expires, signature, now=expires_at) is LinkProblem.EXPIRED


def test_check_rejects_other_live() -> None:
    expires, signature = parts_of(hls_link_prefix(SECRET, 12, now=NOW)[0])
    assert check_hls_link(SECRET, 13, expires, signature, now=NOW) is LinkProblem.INVALID


def test_check_rejects_altered_expiry() -> None:
    expires, signature = parts_of(hls_link_prefix(SECRET, 12, now=NOW)[0])
    later = str(int(expires) + 3600)
    assert check_hls_link(SECRET, 12, later, signature, now=NOW) is LinkProblem.INVALID


def test_check_rejects_other_key() -> None:
    expires, signature = parts_of(hls_link_prefix("another-key", 12, now=NOW)[0])
    assert check_hls_link(SECRET, 12, expires, signature, now=NOW) is LinkProblem.INVALID


def test_check_rejects_recording_signature() -> None:
    """A recording link's signature, made with the same key, opens no HLS stream."""
    url = signed_url(SECRET, 12, RecordingFile.VIDEO, now=NOW)
    signature = url.rsplit("signature=", 1)[1]
    expires = str(link_expiry(NOW))
    assert check_hls_link(SECRET, 12, expires, signature, now=NOW) is LinkProblem.INVALID


@pytest.mark.parametrize(
    ("expires", "signature", "problem"),
    [
        ("", "abc", LinkProblem.MISSING),
        ("1800000900", "", LinkProblem.MISSING),
        ("-1800000900", "abc", LinkProblem.INVALID),
        ("１８００", "abc", LinkProblem.INVALID),
        ("9" * 40, "abc", LinkProblem.INVALID),
        ("1800000900", "é", LinkProblem.INVALID),
    ],
)
def test_check_rejects_malformed_link(expires: str, signature: str, problem: LinkProblem) -> None:
    assert check_hls_link(SECRET, 12, expires, signature, now=NOW) is problem


@pytest.mark.parametrize(
    "name", ["master.m3u8", "high.m3u8", "low.m3u8", "high-init.mp4", "low-0.m4s", "high-42.m4s"]
)
def test_file_name_accepts_stream_file(name: str) -> None:
    assert HLS_FILE_NAME.fullmatch(name)


@pytest.mark.parametrize(
    "name",
    [
        "secret_key",
        ".master.m3u8.tmp",
        "high-0.m4s.tmp",
        "medium.m3u8",
        "high-.m4s",
        "high-1234567890.m4s",
        "../1/master.m3u8",
    ],
)
def test_file_name_rejects_other_file(name: str) -> None:
    assert HLS_FILE_NAME.fullmatch(name) is None
