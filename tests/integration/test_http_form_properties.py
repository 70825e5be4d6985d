"""Generated values in every form of the service, posted to the real application on
SQLite and PostgreSQL. Each form is stored cleaned or rejected with a French client
error, none gets a 5xx, and a rejected form leaves the stored rows unchanged."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from accounts.models import User
from core.database import Database
from core.timezones import TIME_ZONES
from live import service as live_service
from live.models import Live
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS
from mentoring.models import MentorOffer
from mentoring.validation import CAPACITY_MAX, PRESENTATION_MAX_CHARS
from tests.support.fuzz import fuzz_examples, stays_on_site
from tests.support.fuzz_site import CLAIRE_EMAIL, PASSWORD, FuzzSite, assert_handled

pytestmark = pytest.mark.fuzz

# Examples per form and backend: each is one or two requests to the application, and
# a sign-up that passes hashes a password with argon2.
EXAMPLES = fuzz_examples(40)
form_settings = settings(max_examples=EXAMPLES, deadline=None)

# Any value a browser can send in a form field: the whole of Unicode but surrogates,
# which no form encoding carries.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
# Values that broke or could break a parser: NUL (which PostgreSQL rejects in text),
# numbers beyond int()'s 4,300 digits, signs, bidirectional overrides.
tricky_values = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "9" * 5000,
        "--5",
        "-0",
        "+3",
        "\u202eabc",
        "١٢",
        "３",
        "e\u0301" * 700,
        "😀" * 1001,
        "Europe/Paris\x00",
        "../../etc/passwd",
        "<script>alert(1)</script>",
    ]
)
hostile = st.one_of(any_text, tricky_values)


def choice_of(valid: list[str]) -> st.SearchStrategy[str]:
    """Draw a valid choice most of the time, and a hostile value otherwise."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), hostile)


def cleaned(raw: str) -> str:
    """Return a text field as the service stores it: NFC, LF line breaks, trimmed."""
    return unicodedata.normalize("NFC", raw.replace("\r\n", "\n").replace("\r", "\n")).strip()


def post_form(site: FuzzSite, path: str, data: dict[str, Any], csrf: str) -> Any:
    response = site.client.post(path, data={"csrf_token": csrf, **data})
    assert_handled(response)
    event(f"{path.split('/')[1]} {response.status_code}")
    return response


async def count_users(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


# accounts

PARIS = "Europe/Paris"


@form_settings
@given(
    email=st.one_of(st.emails().map(lambda email: email[:200]), hostile),
    display_name=st.one_of(st.text(min_size=1, max_size=20), hostile),
    password=st.one_of(st.just(PASSWORD), hostile),
    time_zone=choice_of(sorted(TIME_ZONES)),
)
@example(email="a\x00b@example.org", display_name="Nadia", password=PASSWORD, time_zone=PARIS)
@example(email=CLAIRE_EMAIL.upper(), display_name="Claire", password=PASSWORD, time_zone=PARIS)
@example(email="nadia@example.org", display_name="\u202eaidaN", password=PASSWORD, time_zone=PARIS)
@example(email="nadia@example.org", display_name="Nadia", password=PASSWORD, time_zone="")
def test_signup_form_any_values(
    fuzz_site: FuzzSite, email: str, display_name: str, password: str, time_zone: str
) -> None:
    csrf = fuzz_site.visitor_csrf("/signup")
    users_before = fuzz_site.run(count_users)
    response = post_form(
        fuzz_site,
        "/signup",
        {
            "email": email,
            "display_name": display_name,
            "password": password,
            "time_zone": time_zone,
        },
        csrf,
    )

    async def stored(database: Database) -> User | None:
        async with database.session() as session:
            return await session.scalar(select(User).where(User.email == email.strip().lower()))

    if response.status_code != 303:
        assert response.status_code == 400
        assert fuzz_site.run(count_users) == users_before
        return
    user = fuzz_site.run(stored)
    assert user is not None
    assert fuzz_site.run(count_users) == users_before + 1
    assert user.display_name == cleaned(display_name)
    assert user.time_zone == time_zone
    for char in user.display_name + user.email:
        assert unicodedata.category(char)[0] != "C", hex(ord(char))


# Post-log-in targets that leave the site in a browser, whatever the server thinks.
OFF_SITE_NEXT = ["//example.org", "/\\example.org", "/\t/example.org", "https://example.org"]


@form_settings
@given(
    email=st.one_of(st.just(CLAIRE_EMAIL), hostile),
    password=st.one_of(st.just(PASSWORD), hostile),
    next_url=st.one_of(st.sampled_from(["/", "/my-agenda", *OFF_SITE_NEXT]), hostile),
)
@example(email=CLAIRE_EMAIL, password=PASSWORD, next_url="/\\example.org")
@example(email=CLAIRE_EMAIL, password=PASSWORD, next_url="/\t/example.org")
@example(email="claire\x00@example.org", password="x" * 20, next_url="/")
def test_login_form_any_values(
    fuzz_site: FuzzSite, email: str, password: str, next_url: str
) -> None:
    """A log-in succeeds only with Claire's address and password, and its redirect
    never leaves the site."""
    fuzz_site.clear_rate_limits()
    csrf = fuzz_site.visitor_csrf("/login")
    response = post_form(
        fuzz_site,
        "/login",
        {"email": email, "password": password, "next": next_url},
        csrf,
    )
    if response.status_code == 303:
        assert email.strip().lower() == CLAIRE_EMAIL
        assert password == PASSWORD
        assert stays_on_site(response.headers["location"]), response.headers["location"]
    else:
        assert response.status_code in {400, 429}


@form_settings
@given(email=st.one_of(st.just(CLAIRE_EMAIL), hostile))
@example(email="claire@example.org\x00")
def test_forgot_password_form_any_email(fuzz_site: FuzzSite, email: str) -> None:
    """The page is the same whether or not the address has an account."""
    fuzz_site.clear_rate_limits()
    csrf = fuzz_site.visitor_csrf("/password/forgot")
    response = post_form(fuzz_site, "/password/forgot", {"email": email}, csrf)
    assert response.status_code in ({400} if not email.strip() else {200})


@form_settings
@given(
    token=st.one_of(st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True), hostile),
    password=hostile,
    same=st.booleans(),
)
@example(token="a\x00b", password="x" * 20, same=True)
@example(token="0/", password="", same=False)
def test_reset_password_form_any_token(
    fuzz_site: FuzzSite, token: str, password: str, same: bool
) -> None:
    """A token that no link has is never accepted, whatever the passwords."""
    csrf = fuzz_site.visitor_csrf("/password/forgot")
    path = "/password/reset/" + quote(token, safe="")
    page = fuzz_site.client.get(path)
    assert_handled(page)
    # A token ending in "/" (sent as %2F) is redirected to the path without that slash.
    assert page.status_code in {307, 404, 405}
    response = post_form(
        fuzz_site,
        path,
        {"password": password, "confirmation": password if same else password + "x"},
        csrf,
    )
    assert response.status_code in {307, 400, 404, 405}


@form_settings
@given(time_zone=choice_of(sorted(TIME_ZONES)))
@example(time_zone="Europe/Paris\x00")
def test_profile_time_zone_any_value(fuzz_site: FuzzSite, time_zone: str) -> None:
    fuzz_site.as_claire()
    response = post_form(fuzz_site, "/profile", {"time_zone": time_zone}, fuzz_site.claire_csrf)

    async def stored_zone(database: Database) -> str | None:
        async with database.session() as session:
            return await session.scalar(
                select(User.time_zone).where(User.id == fuzz_site.claire_id)
            )

    zone = fuzz_site.run(stored_zone)
    assert zone in TIME_ZONES
    if response.status_code in {200, 303} and time_zone in TIME_ZONES:
        assert zone == time_zone


@form_settings
@given(current=hostile, new=hostile, same=st.booleans())
def test_change_password_form_any_values(
    fuzz_site: FuzzSite, current: str, new: str, same: bool
) -> None:
    """A wrong current password is rejected and Claire's session survives it."""
    fuzz_site.clear_rate_limits()
    fuzz_site.as_claire()
    response = post_form(
        fuzz_site,
        "/profile/password",
        {"current_password": current, "new_password": new, "confirmation": new if same else ""},
        fuzz_site.claire_csrf,
    )
    assert response.status_code == 400
    assert fuzz_site.client.get("/profile").status_code == 200


# lives


LIVE_FORM_VALUES = {
    "title": st.one_of(st.text(min_size=1, max_size=30), hostile),
    "description": st.one_of(st.text(max_size=50), hostile),
    "start_day": st.one_of(
        st.dates().map(lambda day: day.isoformat()), st.just("2027-03-10"), hostile
    ),
    "start_time": st.one_of(st.sampled_from(["20:30", "18:00"]), hostile),
    "time_zone": choice_of(sorted(TIME_ZONES)),
    "duration_minutes": st.one_of(st.sampled_from(["45", "60"]), hostile),
}


@form_settings
@given(form=st.fixed_dictionaries(LIVE_FORM_VALUES), edit=st.booleans())
@example(
    form={
        "title": "Cartes\x00mentales",
        "description": "",
        "start_day": "2027-03-10",
        "start_time": "20:30",
        "time_zone": "Europe/Paris",
        "duration_minutes": "9" * 5000,
    },
    edit=False,
)
def test_live_form_any_values(fuzz_site: FuzzSite, form: dict[str, str], edit: bool) -> None:
    """The schedule and edit forms store a live as entered, cleaned, or reject it; a
    rejected edit leaves the live unchanged."""
    fuzz_site.as_claire()

    async def read_live(database: Database) -> tuple[str, str, int] | None:
        async with database.session() as session:
            live = await session.get(Live, fuzz_site.live_id)
            return None if live is None else (live.title, live.description, live.duration_minutes)

    before = fuzz_site.run(read_live)
    path = f"/lives/{fuzz_site.live_id}/edit" if edit else "/lives/new"
    response = post_form(fuzz_site, path, form, fuzz_site.claire_csrf)
    if edit:
        # The live has ended: editing it is refused whatever the form holds.
        assert response.status_code in {400, 409}
        assert fuzz_site.run(read_live) == before
        return
    if response.status_code != 303:
        assert response.status_code == 400
        return

    live_id = int(response.headers["location"].rsplit("/", 1)[1])

    async def stored(database: Database) -> Live | None:
        async with database.session() as session:
            return await session.get(Live, live_id)

    live = fuzz_site.run(stored)
    assert live is not None
    assert live.title == cleaned(form["title"])
    assert live.description == cleaned(form["description"])
    assert 1 <= len(live.title) <= live_service.TITLE_MAX_CHARS
    assert (
        live_service.DURATION_MIN_MINUTES
        <= live.duration_minutes
        <= live_service.DURATION_MAX_MINUTES
    )


# mentoring


offer_forms = st.fixed_dictionaries(
    {
        "disciplines": st.lists(choice_of(list(DISCIPLINES)), max_size=3),
        "levels": st.lists(choice_of(list(LEVELS)), max_size=3),
        "academy": choice_of(list(ACADEMIES)),
        "presentation": st.one_of(st.text(min_size=1, max_size=40), hostile),
        "capacity": st.one_of(st.integers(-2, 12).map(str), hostile),
    }
)
VALID_OFFER = {
    "disciplines": ["francais"],
    "levels": ["college"],
    "academy": "lyon",
    "presentation": "Vingt ans de collège.",
}


@form_settings
@given(form=offer_forms)
@example(form={**VALID_OFFER, "capacity": "9" * 5000})
@example(form={**VALID_OFFER, "capacity": "--5"})
@example(form={**VALID_OFFER, "capacity": "0" * 4400 + "3"})
@example(form={**VALID_OFFER, "capacity": "2", "academy": "lyon\x00"})
def test_mentor_offer_form_any_values(fuzz_site: FuzzSite, form: dict[str, Any]) -> None:
    """An offer is stored with catalog ids and a capacity in range, or rejected and the
    previous offer kept."""
    fuzz_site.as_claire()

    async def read_offer(database: Database) -> tuple[Any, ...] | None:
        async with database.session() as session:
            offer = await session.scalar(
                select(MentorOffer).where(MentorOffer.user_id == fuzz_site.claire_id)
            )
            if offer is None:
                return None
            return (
                tuple(offer.disciplines),
                tuple(offer.levels),
                offer.academy,
                offer.presentation,
                offer.capacity,
            )

    before = fuzz_site.run(read_offer)
    response = post_form(fuzz_site, "/mentoring/offer", form, fuzz_site.claire_csrf)
    after = fuzz_site.run(read_offer)
    if response.status_code != 303:
        assert response.status_code in {400, 409}
        assert after == before
        return
    assert after is not None
    disciplines, levels, academy, presentation, capacity = after
    assert set(disciplines) <= set(DISCIPLINES)
    assert set(levels) <= set(LEVELS)
    assert academy in ACADEMIES
    assert presentation == cleaned(form["presentation"])
    assert 1 <= len(presentation) <= PRESENTATION_MAX_CHARS
    assert 1 <= capacity <= CAPACITY_MAX


need_forms = st.fixed_dictionaries(
    {
        "discipline": choice_of(["mathematiques", *DISCIPLINES]),
        "level": choice_of(["college", *LEVELS]),
        "academy": choice_of(["lyon", *ACADEMIES]),
        "need": st.one_of(st.text(min_size=1, max_size=40), hostile),
        "action": st.one_of(st.sampled_from(["preview", "send"]), hostile),
        "mentor_id": st.one_of(st.just(""), st.integers(-1, 2**40).map(str), hostile),
    }
)


@form_settings
@given(form=need_forms)
@example(
    form={
        "discipline": "mathematiques",
        "level": "college",
        "academy": "lyon",
        "need": "Gestion de classe",
        "action": "preview",
        "mentor_id": "9" * 5000,
    }
)
def test_mentoring_request_form_any_values(fuzz_site: FuzzSite, form: dict[str, str]) -> None:
    """A need is previewed, sent, or rejected; a sent request shows to its mentee."""
    fuzz_site.as_claire()
    response = post_form(fuzz_site, "/mentoring/request", form, fuzz_site.claire_csrf)
    if response.status_code == 303:
        page = fuzz_site.client.get(response.headers["location"])
        assert page.status_code == 200
    else:
        assert response.status_code in {200, 400, 404, 409}


@form_settings
@given(action=st.one_of(st.sampled_from(["pause", "resume", "withdraw"]), hostile))
def test_offer_status_form_any_action(fuzz_site: FuzzSite, action: str) -> None:
    fuzz_site.as_claire()
    response = post_form(
        fuzz_site, "/mentoring/offer/status", {"action": action}, fuzz_site.claire_csrf
    )
    assert response.status_code in {303, 400, 404, 409}


@form_settings
@given(fields=st.dictionaries(st.sampled_from(["dry_run", "x", "csrf"]), hostile, max_size=3))
def test_batch_form_any_fields(fuzz_site: FuzzSite, fields: dict[str, str]) -> None:
    """The operator's batch form runs for any extra field, as a dry run when asked."""
    fuzz_site.as_claire()
    fields.setdefault("dry_run", "1")
    response = post_form(fuzz_site, "/mentoring/operator/batch", fields, fuzz_site.claire_csrf)
    assert response.status_code == 200


# raw bodies

FORM_PATHS = ["/login", "/signup", "/password/forgot", "/profile", "/lives/new", "/mentoring/offer"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "application/json",
    "text/plain",
]
raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                *(b"csrf_token=", b"&", b"=", b"%", b"%FF", b"%00", b"+", b"x" * 10),
                *(b"--xyz\r\n", b"--xyz--\r\n", b"\r\n"),
                b'Content-Disposition: form-data; name="email"\r\n\r\n',
            ]
        ),
        max_size=30,
    ).map(b"".join),
)


@form_settings
@given(
    path=st.sampled_from(FORM_PATHS),
    content_type=st.one_of(st.sampled_from(CONTENT_TYPES), st.text(max_size=40)),
    body=raw_bodies,
    logged_in=st.booleans(),
)
@example(path="/profile", content_type="multipart/form-data", body=b"x", logged_in=True)
@example(path="/login", content_type=CONTENT_TYPES[0], body=b"%FF", logged_in=False)
def test_form_body_any_bytes(
    fuzz_site: FuzzSite, path: str, content_type: str, body: bytes, logged_in: bool
) -> None:
    """A body that no browser would send gets a French client error, never a 5xx."""
    if logged_in:
        fuzz_site.as_claire()
    else:
        fuzz_site.as_visitor()
    # httpx sends only printable ASCII in headers, as browsers do.
    if not (content_type.isascii() and content_type.isprintable()):
        content_type = "application/octet-stream"
    response = fuzz_site.client.post(path, content=body, headers={"content-type": content_type})
    assert_handled(response)
    event(f"{path} {response.status_code}")
