"""The offline ``rules`` provider: aligns scraped pantry listings to HSDS with fixed rules.

It stands in for an LLM where there is no key or no network (the demo, tests, CI): the same
record always yields byte-identical output, and nothing is sent anywhere. It reads the record
shapes the example scrapers produce -- flat fields (``org_name``, ``location``, ``hours``...),
nested objects (``title``, ``address{...}``, ``geo``, ``contact``, ``notes``) and free text
(``raw_text``) -- and copies only what the record states; whatever it cannot read is left out
or kept as text, never guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pirate_worker.llm.base import GenerationConfig, GenerationResult, Message, ProviderError
from pirate_worker.llm.hours import parse_hours
from pirate_worker.llm.prompt import scraped_content


class UnalignableRecordError(ProviderError):
    """The record cannot be aligned (not a JSON object, no organization name).

    Retrying cannot help: the same record always fails the same way.
    """


_NAME_KEYS: Final = ("org_name", "organization_name", "organization", "title", "name")
_US_STATE_CODES: Final = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP"
)
_US_STATES: Final = frozenset(_US_STATE_CODES.split())
_US_NAMES: Final = frozenset({"us", "usa", "u.s.", "u.s.a.", "united states", "united states of america"})

#: Where nested records keep each address part; the part names match the regex groups below.
_ADDRESS_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "street": ("line1", "address_1", "street", "address1"),
    "street2": ("line2", "address_2", "address2"),
    "city": ("city", "locality"),
    "state": ("state", "region", "state_province"),
    "postal": ("postcode", "postal_code", "zip", "zipcode"),
    "country": ("country",),
}
_STATE_ZIP: Final = r"(?P<state>[A-Za-z]{2})\.?\s+(?P<postal>\d{5}(?:-\d{4})?)"
_CITY_LINE: Final = re.compile(rf"^(?P<city>[^,\d][^,]*?),\s*{_STATE_ZIP}$")
_ADDRESS_LINE: Final = re.compile(
    rf"^(?P<street>[^,]+?),\s*(?:(?P<street2>[^,]+?),\s*)?(?P<city>[^,]+?),\s*{_STATE_ZIP}"
    r"(?:,\s*(?P<country>USA?|United States))?$",
    re.IGNORECASE,
)
#: Labelled lines of free-text listings ("Phone: ...") and the listing field each label fills.
_LABELLED: Final = re.compile(r"^(?P<label>[A-Za-z -]{2,20}?)\s*:\s*(?P<value>.+)$")
_LABELS: Final[dict[str, str]] = {
    **dict.fromkeys(("phone", "tel", "telephone"), "phone"),
    **dict.fromkeys(("hours", "open"), "hours"),
    **dict.fromkeys(("email", "e-mail"), "email"),
    **dict.fromkeys(("website", "web"), "website"),
    "eligibility": "eligibility",
}
_OFFERS: Final = re.compile(r"\b(?:we provide|we offer|offers|provides)\s+(?P<list>[^.]+)\.?", re.IGNORECASE)
_ELIGIBILITY: Final = re.compile(r"\beligibility:\s*(?P<text>.+)$", re.IGNORECASE | re.DOTALL)


@dataclass
class _Listing:
    """What a record states, independent of the scraper's field names."""

    name: str
    description: str | None = None
    address: dict[str, str] | None = None  # a complete HSDS address
    address_text: str | None = None  # an address that could not be completed, as listed
    latitude: float | None = None
    longitude: float | None = None
    phone: str | None = None
    email: str | None = None
    website: str | None = None
    hours: str | None = None
    offerings: list[str] = field(default_factory=list)
    eligibility: str | None = None


class RulesProvider:
    """Deterministic, offline :class:`~pirate_worker.llm.base.Provider` of aligned documents.

    ``schema`` is accepted for interface compatibility; the answer always follows
    :func:`pirate_worker.hsds.schema.aligned_document_schema`.
    """

    name = "rules"

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        """Align the conversation's scraped record; raise :class:`UnalignableRecordError` if it can't."""
        content = scraped_content(messages)
        if content is None:
            raise UnalignableRecordError("the conversation holds no scraped record (no user message)")
        document = align_record(content)
        text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return GenerationResult(
            text=text,
            parsed=document,
            model=config.model,
            usage={
                "input_tokens": sum(_word_count(message.content) for message in messages),
                "output_tokens": _word_count(text),
            },
            stop_reason="end_turn",
        )


def align_record(content: str) -> dict[str, Any]:
    """Return the aligned document for one scraped record given as JSON text.

    Raises :class:`UnalignableRecordError` when the text is not a JSON object or names no
    organization.
    """
    try:
        record = json.loads(content)
    except ValueError as exc:
        raise UnalignableRecordError(f"record is not JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise UnalignableRecordError(f"record is a JSON {_json_kind(record)}, not an object")
    return _document(_read_listing(record))


def _read_listing(record: Mapping[str, Any]) -> _Listing:
    name = next((found for key in _NAME_KEYS if (found := _named(record.get(key)))), None)
    if name is None and _text(record.get("raw_text")):
        return _read_free_text(str(record["raw_text"]))
    if name is None:
        keys = ", ".join((*_NAME_KEYS, "raw_text"))
        raise UnalignableRecordError(f"record names no organization (looked for {keys})")
    contact = _mapping(record.get("contact"))
    geo = _mapping(record.get("geo"))
    listing = _Listing(
        name=name,
        description=_text(record.get("description")),
        phone=_text(_first((record, contact), ("phone", "tel", "telephone"))),
        email=_text(_first((record, contact), ("email", "mail"))),
        website=_text(_first((record, contact), ("website", "url", "web"))),
        hours=_text(_first((record,), ("hours", "schedule", "opening_hours"))),
        latitude=_coordinate(_first((record, geo), ("latitude", "lat")), limit=90),
        longitude=_coordinate(_first((record, geo), ("longitude", "lng", "lon")), limit=180),
        offerings=_offering_list(record.get("services")),
        eligibility=_sentence(_text(record.get("eligibility"))),
    )
    for key in ("location", "address"):
        value = record.get(key)
        if isinstance(value, Mapping):
            _read_address_object(listing, value)
        elif (line := _text(value)) and not _read_address_line(listing, line):
            listing.address_text = line
    if notes := _text(record.get("notes")):
        _read_prose(listing, notes, remainder_is_eligibility=True)
    return listing


def _read_free_text(raw_text: str) -> _Listing:
    lines = [line.strip() for line in raw_text.splitlines() if line.strip()]
    name = _named(lines[0])
    if name is None:
        raise UnalignableRecordError("free-text record does not start with an organization name")
    listing = _Listing(name=name)
    unlabelled: list[str] = []
    for line in lines[1:]:
        labelled = _LABELLED.match(line)
        field_name = _LABELS.get(labelled["label"].lower()) if labelled else None
        if labelled and field_name:
            setattr(listing, field_name, _sentence(labelled["value"]))
        elif _read_address_line(listing, line):
            continue
        elif (city := _CITY_LINE.match(line)) and listing.address is None:
            # The street is the unlabelled line just above "City, ST 12345".
            street = unlabelled.pop() if unlabelled else None
            _set_address(listing, {**city.groupdict(), "street": street})
        else:
            unlabelled.append(line)
    if unlabelled:
        _read_prose(listing, " ".join(unlabelled), remainder_is_eligibility=False)
    return listing


def _read_prose(listing: _Listing, text: str, *, remainder_is_eligibility: bool) -> None:
    if eligibility := _ELIGIBILITY.search(text):
        listing.eligibility = listing.eligibility or _sentence(eligibility["text"])
        text = text[: eligibility.start()]
    offers = _OFFERS.search(text)
    if offers is None:
        # Prose that lists no offerings is still what the source says about the place.
        listing.description = listing.description or _text(text)
        return
    listing.offerings = listing.offerings or _offering_list(offers["list"])
    remainder = (text[: offers.start()] + text[offers.end() :]).strip()
    # Nested listings put who may come after the offerings, unlabelled ("... Seniors 60+.").
    if remainder_is_eligibility and remainder:
        listing.eligibility = listing.eligibility or _sentence(remainder)


def _read_address_object(listing: _Listing, address: Mapping[str, Any]) -> None:
    parts = {part: _first((address,), keys) for part, keys in _ADDRESS_KEYS.items()}
    _set_address(
        listing, {part: _postal(value) if part == "postal" else _text(value) for part, value in parts.items()}
    )


def _read_address_line(listing: _Listing, line: str) -> bool:
    match = _ADDRESS_LINE.match(line)
    if match:
        _set_address(listing, match.groupdict())
    return match is not None


def _set_address(listing: _Listing, parts: Mapping[str, str | None]) -> None:
    """Set the HSDS address from its parts (keys of ``_ADDRESS_KEYS``), or keep them as text."""
    street, street2, city, postal_code = (parts.get(key) for key in ("street", "street2", "city", "postal"))
    state = parts.get("state")
    state = state.upper() if state and len(state) == 2 else state
    country = _country(parts.get("country"), state)
    if not (street and city and state and postal_code and country):
        # HSDS requires all of these; an address missing one is kept as text, never completed.
        given = (street, street2, city, " ".join(filter(None, (state, postal_code))), parts.get("country"))
        listing.address_text = ", ".join(part for part in given if part) or None
        return
    listing.address = {"address_1": street, "city": city, "state_province": state}
    if street2:
        listing.address["address_2"] = street2
    listing.address |= {"postal_code": postal_code, "country": country, "address_type": "physical"}


def _country(country: str | None, state: str | None) -> str | None:
    if country is None:
        return "US" if state in _US_STATES else None
    if country.lower() in _US_NAMES:
        return "US"
    return country.upper() if len(country) == 2 else None


def _document(listing: _Listing) -> dict[str, Any]:
    organization: dict[str, Any] = {"name": listing.name, "description": _description(listing)}
    if listing.email and "@" in listing.email:
        organization["email"] = listing.email
    if listing.website:
        organization["website"] = listing.website
    organization["phones"] = _phones(listing)
    services = []
    for offering in listing.offerings:
        service: dict[str, Any] = {"name": offering[:1].upper() + offering[1:], "status": "active"}
        if listing.eligibility:
            service["eligibility_description"] = listing.eligibility
        services.append(service)
    return {"organization": organization, "services": services, "locations": _locations(listing)}


def _locations(listing: _Listing) -> list[dict[str, Any]]:
    # A location only when the record places the pantry somewhere (or says when it opens).
    if not (listing.address or listing.address_text or listing.latitude is not None or listing.hours):
        return []
    location: dict[str, Any] = {"name": listing.name, "location_type": "physical"}
    if listing.address_text and not listing.address:
        location["description"] = f"Address as listed: {listing.address_text}"
    if listing.latitude is not None and listing.longitude is not None:
        location["latitude"], location["longitude"] = listing.latitude, listing.longitude
    location["addresses"] = [dict(listing.address)] if listing.address else []
    location["phones"] = _phones(listing)
    location["schedules"] = parse_hours(listing.hours) if listing.hours else []
    return [location]


def _phones(listing: _Listing) -> list[dict[str, str]]:
    # Every sample labels it phone/tel: a voice line. A fresh list per owner, never shared.
    return [{"number": listing.phone, "type": "voice"}] if listing.phone else []


def _description(listing: _Listing) -> str:
    if listing.description:
        return listing.description
    sentences = []
    if listing.offerings:
        sentences.append(f"Offers {', '.join(listing.offerings)}.")
    if listing.eligibility:
        sentences.append(f"Eligibility: {listing.eligibility}.")
    return " ".join(sentences) or f"Listing for {listing.name}; the source gives no description."


def _offering_list(value: object) -> list[str]:
    items = value if isinstance(value, list) else re.split(r"[,;]", value) if isinstance(value, str) else []
    names: list[str] = []
    for item in items:
        text = re.sub(r"^(?:and|&)\s+", "", _text(item) or "", flags=re.IGNORECASE).rstrip(".").strip()
        if text and text.lower() not in (known.lower() for known in names):
            names.append(text)
    return names


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first(sources: tuple[Mapping[str, Any], ...], keys: tuple[str, ...]) -> object:
    """The first non-empty value under any of ``keys``, searching ``sources`` in order."""
    for source in sources:
        for key in keys:
            if source.get(key) not in (None, ""):
                return source[key]
    return None


def _text(value: object) -> str | None:
    """Whitespace-normalised text of a string or number; None for anything else or blank."""
    if isinstance(value, str):
        return " ".join(value.split()) or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _named(value: object) -> str | None:
    text = _text(value) if isinstance(value, str) else None
    return text if text and any(char.isalpha() for char in text) else None


def _sentence(text: str | None) -> str | None:
    """Strip a trailing full stop, so the same statement reads alike from every scraper."""
    if text is None:
        return None
    return text.strip().rstrip(".").strip() or None


def _postal(value: object) -> str | None:
    # A ZIP code scraped as a number lost its leading zeros; US ZIP codes have five digits.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100000:
        return f"{value:05d}"
    return _text(value)


def _coordinate(value: object, *, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and -limit <= number <= limit else None


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null")


def _word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))
