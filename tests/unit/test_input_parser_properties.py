"""Property tests of the pure parsers behind forms, query strings and paths, which the
HTTP property tests reach through the application at a smaller count. Each value is
parsed into something the rules accept or rejected with the parser's documented error."""

from __future__ import annotations

import re
import time
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accounts.routes import _safe_next
from accounts.service import (
    DISPLAY_NAME_MAX_CHARS,
    EMAIL_MAX_CHARS,
    AccountError,
    clean_display_name,
    normalize_email,
    validate_email,
)
from core.web import ID_MAX, IdConvertor
from live.calendar import FEED_TOKEN_PATTERN
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS
from mentoring.errors import MentoringError
from mentoring.validation import (
    CAPACITY_MAX,
    NEED_MAX_CHARS,
    PRESENTATION_MAX_CHARS,
    parse_capacity,
    parse_need,
    parse_offer,
)
from recordings.links import LinkProblem, RecordingFile, check_link, signed_url
from signaling.routes import parse_live_id
from tests.support.fuzz import fuzz_examples, stays_on_site

pytestmark = pytest.mark.fuzz

EXAMPLES = fuzz_examples(200)
parser_settings = settings(max_examples=EXAMPLES)

# Any form or query value: the whole of Unicode but surrogates, which no form carries.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
digits = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["9" * 5000, "0" * 4400 + "3", "--5", "-0", "+3", " 3 ", "３", "١٢", "²"]),
)
values = st.one_of(any_text, digits)

SECRET_KEY = "parser-secret-key"
NOW = 1_800_000_000.0


@parser_settings
@given(raw=values)
@example(raw="9" * 5000)
@example(raw="--5")
@example(raw="-" + "9" * 5000)
@example(raw="0" * 4400 + "3")
def test_capacity_any_value(raw: str) -> None:
    """Regression: `--5` and numbers of more than 4,300 digits raised ValueError."""
    try:
        capacity = parse_capacity(raw)
    except MentoringError as error:
        assert error.code in {"capacity_invalid", "capacity_too_small", "capacity_too_large"}
        return
    assert 1 <= capacity <= CAPACITY_MAX
    assert capacity == int(raw.strip().lstrip("0"))


# Catalog ids, often valid, or any other value.
def catalog_value(catalog: dict[str, object]) -> st.SearchStrategy[str]:
    valid = st.sampled_from(list(catalog))
    return st.one_of(valid, valid.map(lambda key: f" {key.upper()} "), values)


@parser_settings
@given(
    disciplines=st.lists(catalog_value(dict(DISCIPLINES)), max_size=4),
    levels=st.lists(catalog_value(dict(LEVELS)), max_size=4),
    academy=catalog_value(dict(ACADEMIES)),
    presentation=st.one_of(st.text(min_size=1, max_size=40), values),
    capacity=st.one_of(st.integers(1, CAPACITY_MAX).map(str), values),
)
def test_offer_any_values(
    disciplines: list[str], levels: list[str], academy: str, presentation: str, capacity: str
) -> None:
    """An offer keeps only catalog ids, each once in catalog order, and a clean text."""
    try:
        offer = parse_offer(
            disciplines=disciplines,
            levels=levels,
            academy=academy,
            presentation=presentation,
            capacity=capacity,
        )
    except MentoringError as error:
        assert error.message
        return
    assert list(offer.disciplines) == [key for key in DISCIPLINES if key in offer.disciplines]
    assert list(offer.levels) == [key for key in LEVELS if key in offer.levels]
    assert set(offer.disciplines) == {value.strip() for value in disciplines if value.strip()}
    assert offer.academy == academy.strip()
    assert offer.academy in ACADEMIES
    assert 1 <= len(offer.presentation) <= PRESENTATION_MAX_CHARS
    assert offer.presentation == offer.presentation.strip()
    for char in offer.presentation:
        assert unicodedata.category(char) != "Cc" or char in "\n\t", hex(ord(char))


@parser_settings
@given(
    discipline=catalog_value(dict(DISCIPLINES)),
    level=catalog_value(dict(LEVELS)),
    academy=catalog_value(dict(ACADEMIES)),
    need=st.one_of(st.text(min_size=1, max_size=40), values),
)
def test_need_any_values(discipline: str, level: str, academy: str, need: str) -> None:
    try:
        details = parse_need(discipline=discipline, level=level, academy=academy, need=need)
    except MentoringError as error:
        assert error.message
        return
    assert details.discipline in DISCIPLINES
    assert details.level in LEVELS
    assert details.academy in ACADEMIES
    assert 1 <= len(details.need) <= NEED_MAX_CHARS


@parser_settings
@given(raw=st.one_of(st.text(min_size=1, max_size=30), values))
@example(raw="\u202eaidaN")
@example(raw="A" * DISPLAY_NAME_MAX_CHARS + "\u0301")
def test_display_name_any_value(raw: str) -> None:
    try:
        name = clean_display_name(raw)
    except AccountError as error:
        assert error.code.startswith("display_name_")
        return
    assert 1 <= len(name) <= DISPLAY_NAME_MAX_CHARS
    assert name == unicodedata.normalize("NFC", name).strip()
    for char in name:
        assert unicodedata.category(char)[0] != "C", hex(ord(char))


@parser_settings
@given(raw=st.one_of(st.emails(), values))
@example(raw="a\x00b@example.org")
@example(raw="claire@example\u200b.org")
def test_email_any_value(raw: str) -> None:
    email = normalize_email(raw)
    try:
        validate_email(email)
    except AccountError as error:
        assert error.code == "email_invalid"
        return
    assert len(email) <= EMAIL_MAX_CHARS
    assert "@" in email
    assert "\x00" not in email
    assert not any(char.isspace() for char in email)


@parser_settings
@given(
    raw=st.one_of(
        values,
        st.lists(st.sampled_from(["/", "\\", "\t", "\n", ":", "example.org", "@", "%2F"])).map(
            "".join
        ),
    )
)
# Regression: a backslash or a tab after the first slash was kept, and browsers read
# both as `//`, the start of another site's address.
@example(raw="/\\example.org")
@example(raw="/\t/example.org")
@example(raw="//example.org")
def test_next_url_any_value(raw: str) -> None:
    """The redirect after log-in stays on the site for a browser, before Starlette's
    RedirectResponse escapes it."""
    target = _safe_next(raw)
    assert stays_on_site(target), target


@parser_settings
@given(
    expires=st.one_of(digits, st.integers(0, 2 * int(NOW)).map(str), any_text),
    signature=st.one_of(any_text, st.text("ABCDEFabcdef0123456789-_", max_size=50)),
    recording_id=st.integers(1, ID_MAX),
    file=st.sampled_from(list(RecordingFile)),
)
@example(expires="9" * 5000, signature="x", recording_id=1, file=RecordingFile.VIDEO)
def test_signed_link_any_params(
    expires: str, signature: str, recording_id: int, file: RecordingFile
) -> None:
    """Regression: an `expires` of more than 4,300 digits raised ValueError."""
    problem = check_link(SECRET_KEY, recording_id, file, expires, signature, now=NOW)
    assert problem in {LinkProblem.MISSING, LinkProblem.INVALID, LinkProblem.EXPIRED}


@parser_settings
@given(recording_id=st.integers(1, ID_MAX), file=st.sampled_from(list(RecordingFile)))
def test_signed_link_made_here_accepted(recording_id: int, file: RecordingFile) -> None:
    url = signed_url(SECRET_KEY, recording_id, file, now=time.time())
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    assert check_link(SECRET_KEY, recording_id, file, query["expires"], query["signature"]) is None


@parser_settings
@given(raw=values)
@example(raw=str(ID_MAX + 1))
@example(raw="0" * 10)
def test_path_ids_any_value(raw: str) -> None:
    """The `{x:id}` convertor and the signaling socket's live id give an id from 0,
    which no row has, to ID_MAX, or None; an id the convertor accepts is written one
    way only."""
    if re.fullmatch(IdConvertor.regex, raw):
        number = IdConvertor().convert(raw)
        assert 0 <= number <= ID_MAX
        assert number == 0 or str(number) == raw
    live_id = parse_live_id(raw)
    if live_id is not None:
        assert str(live_id) == raw
        assert 0 <= live_id <= ID_MAX


@parser_settings
@given(raw=st.one_of(st.from_regex(FEED_TOKEN_PATTERN, fullmatch=True), values))
def test_feed_token_pattern_any_value(raw: str) -> None:
    """Only 43 URL-safe characters can name a feed, so nothing else reaches the query."""
    if FEED_TOKEN_PATTERN.fullmatch(raw):
        assert len(raw) == 43
        assert raw.isascii()
