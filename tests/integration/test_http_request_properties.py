"""Generated query strings, path segments, Range headers, session cookies, CSRF tokens
and calendar feed tokens, sent to the real application on SQLite and PostgreSQL. Each
request gets a success, a redirect or a French client error, and never a 5xx."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from recordings.links import RecordingFile, signed_url
from tests.support.fuzz import fuzz_examples
from tests.support.fuzz_site import (
    SECRET_KEY,
    SESSION_COOKIE,
    VIDEO_BYTES,
    FuzzSite,
    assert_handled,
)

pytestmark = pytest.mark.fuzz

# Examples per test and backend; each is one or two requests.
EXAMPLES = fuzz_examples(60)
request_settings = settings(max_examples=EXAMPLES, deadline=None)

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
numbers = st.one_of(
    st.integers(-5, 50).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "9" * 5000, "0" * 5000 + "1", "1e3", "0x10", "١", "+1", " 1"]),
)
query_values = st.one_of(numbers, any_text)


@request_settings
@given(after=query_values, limit=query_values)
@example(after="9" * 5000, limit="1")
@example(after="0" * 5000 + "1", limit="-1")
def test_chat_events_any_query(fuzz_site: FuzzSite, after: str, limit: str) -> None:
    """`after` and `limit` are whole numbers; a page contains at most `limit`
    events, and none at or before `after`."""
    fuzz_site.as_claire()
    query = urlencode({"after": after, "limit": limit})
    response = fuzz_site.client.get(f"/api/chat/live:{fuzz_site.live_id}/events?{query}")
    assert_handled(response)
    event(str(response.status_code))
    assert response.status_code in {200, 400}
    if response.status_code == 200:
        body = response.json()
        seqs = [item["seq"] for item in body["events"]]
        assert seqs == sorted(seqs)
        if after.isascii() and after.isdigit() and len(after) < 20:
            assert all(seq > int(after) for seq in seqs)
        if limit.isascii() and limit.isdigit() and len(limit) < 20:
            assert len(seqs) <= int(limit)


@request_settings
@given(
    path=st.sampled_from(["/login", "/my-agenda", "/mentoring/offer", "/"]),
    name=st.sampled_from(["next", "lien", "saved", "mot-de-passe", "x"]),
    value=query_values,
    repeat=st.booleans(),
)
def test_page_any_query(
    fuzz_site: FuzzSite, path: str, name: str, value: str, repeat: bool
) -> None:
    fuzz_site.as_claire()
    pairs = [(name, value), (name, value + "x")] if repeat else [(name, value)]
    response = fuzz_site.client.get(f"{path}?{urlencode(pairs)}")
    assert_handled(response)
    assert response.status_code == 200


@request_settings
@given(
    expires=numbers,
    signature=st.one_of(any_text, st.text("ABCDEFabcdef0123456789-_", max_size=50)),
    file=st.sampled_from(list(RecordingFile)),
)
# More digits than int() parses, which gave a 500.
@example(expires="9" * 5000, signature="abc", file=RecordingFile.VIDEO)
@example(expires="9" * 4301, signature="é", file=RecordingFile.POSTER)
def test_signed_link_any_params(
    fuzz_site: FuzzSite, expires: str, signature: str, file: RecordingFile
) -> None:
    """A link whose signature the server did not make is refused with 403."""
    fuzz_site.as_claire()
    query = urlencode({"expires": expires, "signature": signature})
    response = fuzz_site.client.get(f"/recordings/{fuzz_site.recording_id}/{file.value}?{query}")
    assert_handled(response)
    assert response.status_code == 403


def range_header_values() -> st.SearchStrategy[str]:
    size = len(VIDEO_BYTES)
    position = st.one_of(st.integers(0, size + 10).map(str), numbers)
    single = st.builds(
        lambda start, end: f"{start}-{end}", st.one_of(position, st.just("")), position
    )
    suffix = position.map(lambda count: f"-{count}")
    ranges = st.lists(st.one_of(single, suffix), min_size=1, max_size=4).map(",".join)
    return st.one_of(
        st.builds(
            lambda unit, spec: f"{unit}={spec}",
            st.sampled_from(["bytes", "bytes ", "octets"]),
            ranges,
        ),
        any_text,
    ).filter(is_header_value)


def is_header_value(text: str) -> bool:
    """Return whether httpx sends `text` as a header value: printable ASCII."""
    return text.isascii() and text.isprintable()


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@request_settings
@given(header=range_header_values())
@example(header="bytes=0-0")
@example(header="bytes=-1")
@example(header="bytes=0-" + "9" * 5000)
# Malformed, which got an English 400 from Starlette 1.10.
@example(header="bytes=5-2")
@example(header="octets=0-1")
@example(header="bytes=0-1,0-1,0-1,0-1")
def test_range_header_any_value(fuzz_site: FuzzSite, header: str) -> None:
    """A single satisfiable range gets 206 with exactly those bytes; others get the
    whole file (a malformed header is ignored), several parts or 416."""
    fuzz_site.as_claire()
    link = signed_url(SECRET_KEY, fuzz_site.recording_id, RecordingFile.VIDEO)
    response = fuzz_site.client.get(link, headers={"range": header})
    event(str(response.status_code))
    assert response.status_code in {200, 206, 416}
    if response.status_code == 416:
        # for the video player, which reads the size and shows no text
        assert response.headers["content-range"] == f"bytes */{len(VIDEO_BYTES)}"
        return
    if response.status_code == 200:
        assert response.content == VIDEO_BYTES
    if response.status_code == 206 and response.headers["content-type"] == "video/mp4":
        match = CONTENT_RANGE.fullmatch(response.headers["content-range"])
        assert match is not None
        start, end, total = (int(group) for group in match.groups())
        assert total == len(VIDEO_BYTES)
        assert response.content == VIDEO_BYTES[start : end + 1]


@request_settings
@given(token=st.one_of(st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True), any_text))
@example(token="\x00" * 43)
@example(token="a" * 42 + "é")
def test_calendar_token_any_value(fuzz_site: FuzzSite, token: str) -> None:
    """Only the current token opens a feed, and without a session cookie."""
    fuzz_site.as_visitor()
    response = fuzz_site.client.get(f"/calendar/{quote(token, safe='')}.ics")
    assert_handled(response)
    if token == fuzz_site.calendar_token:
        assert response.status_code == 200
    else:
        assert response.status_code == 404


def test_calendar_current_token_opens_feed(fuzz_site: FuzzSite) -> None:
    fuzz_site.as_visitor()
    response = fuzz_site.client.get(f"/calendar/{fuzz_site.calendar_token}.ics")
    assert response.status_code == 200
    assert response.text.startswith("BEGIN:VCALENDAR")


# Every route with a path parameter, `{}` standing for it, and the methods to try.
PATH_TEMPLATES = [
    ("GET", "/lives/{}"),
    ("GET", "/lives/{}/edit"),
    ("POST", "/lives/{}/register"),
    ("POST", "/lives/{}/unregister"),
    ("GET", "/lives/{}/replay"),
    ("GET", "/api/lives/{}/recording"),
    ("GET", "/api/lives/{}/replay"),
    ("GET", "/recordings/{}/video.mp4"),
    ("GET", "/recordings/{}/poster.jpg"),
    ("GET", "/mentoring/requests/{}"),
    ("POST", "/mentoring/requests/{}/cancel"),
    ("POST", "/mentoring/requests/{}/accept"),
    ("GET", "/mentoring/conversations/{}"),
    ("POST", "/mentoring/conversations/{}/end"),
    ("POST", "/api/mentoring/conversations/{}/read"),
    ("GET", "/api/chat/{}/events"),
    ("GET", "/password/reset/{}"),
    ("GET", "/calendar/{}.ics"),
]
segments = st.one_of(
    numbers,
    any_text,
    st.sampled_from(["live:1", "live:", "live:9999999999", "conversation:x", ":", "live:-1"]),
    st.builds(lambda number: f"live:{number}", numbers),
)


@request_settings
@given(template=st.sampled_from(PATH_TEMPLATES), segment=segments, logged_in=st.booleans())
@example(template=("GET", "/api/chat/{}/events"), segment="live:" + "9" * 5000, logged_in=True)
# A form posted to a JSON endpoint: the CSRF check consumed the body, and the
# endpoint's body() raised RuntimeError (a 500).
@example(template=("POST", "/api/mentoring/conversations/{}/read"), segment="0", logged_in=True)
@example(template=("GET", "/mentoring/conversations/{}"), segment="\x00", logged_in=True)
@example(template=("GET", "/lives/{}"), segment="0" * 10, logged_in=True)
def test_path_segment_any_value(
    fuzz_site: FuzzSite, template: tuple[str, str], segment: str, logged_in: bool
) -> None:
    if logged_in:
        fuzz_site.as_claire()
    else:
        fuzz_site.as_visitor()
    method, path = template
    url = path.format(quote(segment, safe=":"))
    data = {"csrf_token": fuzz_site.claire_csrf} if method == "POST" else None
    response = fuzz_site.client.request(method, url, data=data)
    assert_handled(response)
    event(f"{response.status_code}")


@request_settings
@given(
    cookie=st.one_of(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789=._-", max_size=120),
        st.builds(
            lambda position, char: (position, char),
            st.integers(0, 200),
            st.sampled_from("Aa0=._-"),
        ),
    )
)
@example(cookie="e30=.AAAAAA.xx")
@example(cookie=(0, "x"))
def test_session_cookie_any_value(fuzz_site: FuzzSite, cookie: str | tuple[int, str]) -> None:
    """A session cookie that the server did not sign, Claire's altered in one place
    included, counts as no session."""
    if isinstance(cookie, tuple):
        position, char = cookie
        real = fuzz_site.claire_cookie
        position %= len(real)
        value = real[:position] + char + real[position + 1 :]
    else:
        value = cookie
    fuzz_site.client.cookies.clear()
    fuzz_site.client.cookies.set(SESSION_COOKIE, value)
    response = fuzz_site.client.get("/profile")
    assert_handled(response)
    if value == fuzz_site.claire_cookie:
        assert response.status_code == 200
    else:
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    assert fuzz_site.client.get("/").status_code == 200


@request_settings
@given(
    token=st.one_of(any_text, st.text("ABCDEFabcdef0123456789-_", max_size=50)),
    in_header=st.booleans(),
)
# Not ASCII, which made hmac.compare_digest raise TypeError (a 500).
@example(token="é", in_header=False)
@example(token="\x00", in_header=False)
def test_csrf_token_any_value(fuzz_site: FuzzSite, token: str, in_header: bool) -> None:
    """A state-changing request with any token but the session's is refused with 403,
    whether the token comes in the form or in the X-CSRF-Token header."""
    fuzz_site.as_claire()
    if in_header and not is_header_value(token):
        in_header = False
    if in_header:
        response = fuzz_site.client.post(
            "/profile", data={"time_zone": "Europe/Paris"}, headers={"x-csrf-token": token}
        )
    else:
        response = fuzz_site.client.post(
            "/profile", data={"time_zone": "Europe/Paris", "csrf_token": token}
        )
    assert_handled(response)
    if token == fuzz_site.claire_csrf:
        assert response.status_code in {200, 303}
    else:
        assert response.status_code == 403
