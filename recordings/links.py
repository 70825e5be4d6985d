"""Signed, expiring links to a recording's files.

A link carries its expiry time and an HMAC of the recording id, the file name and that
time, made with the deployment's secret key. A page hands out a link that works for a
few hours, and a CDN in front of the service can check the same signature.
"""

from __future__ import annotations

import enum
import hashlib
import time
from urllib.parse import urlencode

from itsdangerous import Signer

# A replay is watched in one sitting, with pauses: a link stays valid for a long
# evening, and the replay JSON hands out a fresh one on each load.
SIGNED_LINK_LIFETIME_SECS = 6 * 3600
# The longest `expires` accepted. A Unix time in seconds has 10 digits until the
# year 2286, and a bound keeps int() from parsing thousands of digits.
EXPIRES_MAX_DIGITS = 20
# Separates these signatures from any other use of the secret key.
SIGNATURE_SALT = "veillee.recordings.file"


class RecordingFile(enum.StrEnum):
    """The files of a ready recording, by the name they have in their URL."""

    VIDEO = "video.mp4"
    POSTER = "poster.jpg"


class LinkProblem(enum.StrEnum):
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"


def _signer(secret_key: str, salt: str) -> Signer:
    return Signer(secret_key, salt=salt, digest_method=hashlib.sha256)


def sign_value(secret_key: str, value: str, salt: str = SIGNATURE_SALT) -> str:
    """Return the URL-safe signature of `value`; another `salt` makes signatures for
    another use that never pass for these."""
    return _signer(secret_key, salt).get_signature(value).decode("ascii")


def signature_matches(
    secret_key: str, value: str, signature: str, salt: str = SIGNATURE_SALT
) -> bool:
    return _signer(secret_key, salt).verify_signature(value, signature.encode("ascii", "replace"))


def _signed_value(recording_id: int, file: RecordingFile, expires: int) -> str:
    return f"{recording_id}/{file.value}/{expires}"


def signed_url(
    secret_key: str,
    recording_id: int,
    file: RecordingFile,
    *,
    now: float | None = None,
    lifetime_secs: int = SIGNED_LINK_LIFETIME_SECS,
) -> str:
    """Return the path and query of a link to `file` that expires after `lifetime_secs`."""
    expires = int(now if now is not None else time.time()) + lifetime_secs
    signature = sign_value(secret_key, _signed_value(recording_id, file, expires))
    query = urlencode({"expires": expires, "signature": signature})
    return f"/recordings/{recording_id}/{file.value}?{query}"


def check_link(
    secret_key: str,
    recording_id: int,
    file: RecordingFile,
    expires: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> LinkProblem | None:
    """Return what is wrong with a link's `expires` and `signature`, or None when it is
    valid. The signature is checked before the expiry, so an altered expiry is invalid."""
    if not expires or not signature:
        return LinkProblem.MISSING
    # int() rejects more than 4,300 digits, and no signed link has more than 20.
    if not expires.isascii() or not expires.isdigit() or len(expires) > EXPIRES_MAX_DIGITS:
        return LinkProblem.INVALID
    expires_at = int(expires)
    if not signature_matches(secret_key, _signed_value(recording_id, file, expires_at), signature):
        return LinkProblem.INVALID
    if expires_at <= (now if now is not None else time.time()):
        return LinkProblem.EXPIRED
    return None
