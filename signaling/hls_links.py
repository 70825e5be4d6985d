"""Signed, expiring links to a live's HLS stream.

A link is a path prefix, /hls/<live id>/<expires>/<signature>/, followed by a file name.
The playlists name their segments by relative URLs, so every segment request carries
the credential of the playlist it came from, and an HTTP cache or CDN can serve the
files without the session cookie. The signature is an HMAC of the live id and the
expiry time, made with the deployment's secret key (the signer of recordings/links.py,
under its own salt).

Expiry times are rounded up to the next multiple of HLS_LINK_STEP_SECS, so everyone who
asks within one step gets the same link, and a CDN keeps one copy of each segment
for all of them instead of one per viewer.
"""

from __future__ import annotations

import re
import time

from recordings.links import LinkProblem, sign_value, signature_matches

# Separates these signatures from the recordings' and any other use of the secret key.
HLS_SIGNATURE_SALT = "veillee.hls.stream"
# A link works for at least this long. The page asks for a new one before that, so a
# copied link stops working within 20 minutes of being handed out.
HLS_LINK_LIFETIME_SECS = 15 * 60
# Expiry times are multiples of this, so links handed out within one step are equal.
HLS_LINK_STEP_SECS = 5 * 60
# The page asks for a new link this long before its link expires.
HLS_LINK_REFRESH_MARGIN_SECS = 5 * 60

# The files of one live's stream: the master playlist, and for each quality its media
# playlist, its initialization segment and its numbered media segments.
HLS_FILE_NAME = re.compile(r"master\.m3u8|(high|low)(\.m3u8|-init\.mp4|-\d{1,9}\.m4s)")
# Expiry times are Unix seconds: ten digits until the year 2286.
EXPIRES_MAX_DIGITS = 12


def _signed_value(live_id: int, expires: int) -> str:
    return f"hls/{live_id}/{expires}"


def link_expiry(now: float) -> int:
    """Return the expiry of a link handed out at `now`, in Unix seconds: between
    HLS_LINK_LIFETIME_SECS and one step more after `now`."""
    step_end = (int(now) // HLS_LINK_STEP_SECS + 1) * HLS_LINK_STEP_SECS
    return step_end + HLS_LINK_LIFETIME_SECS


def hls_link_prefix(secret_key: str, live_id: int, *, now: float | None = None) -> tuple[str, int]:
    """Return the path prefix of a link to the live's stream, ending with "/", and its
    expiry in Unix seconds."""
    expires = link_expiry(now if now is not None else time.time())
    signature = sign_value(secret_key, _signed_value(live_id, expires), HLS_SIGNATURE_SALT)
    return f"/hls/{live_id}/{expires}/{signature}/", expires


def check_hls_link(
    secret_key: str, live_id: int, expires: str, signature: str, *, now: float | None = None
) -> LinkProblem | None:
    """Return what is wrong with a link's `expires` and `signature` path segments, or
    None when it is valid. The signature is checked first, so an altered expiry is
    invalid rather than expired."""
    if not expires or not signature:
        return LinkProblem.MISSING
    if not expires.isascii() or not expires.isdigit() or len(expires) > EXPIRES_MAX_DIGITS:
        return LinkProblem.INVALID
    expires_at = int(expires)
    if not signature_matches(
        secret_key, _signed_value(live_id, expires_at), signature, HLS_SIGNATURE_SALT
    ):
        return LinkProblem.INVALID
    if expires_at <= (now if now is not None else time.time()):
        return LinkProblem.EXPIRED
    return None
