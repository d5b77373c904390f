"""Opening hours as scraped ("Mon-Sat 8am-4pm", "Tue & Thu 10:30am-1pm") to weekly HSDS schedules."""

from __future__ import annotations

import re
from typing import Final

_WEEK: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY_NAMES: Final[dict[str, str]] = {
    **dict.fromkeys(("mon", "monday"), "MO"),
    **dict.fromkeys(("tue", "tues", "tuesday"), "TU"),
    **dict.fromkeys(("wed", "weds", "wednesday"), "WE"),
    **dict.fromkeys(("thu", "thur", "thurs", "thursday"), "TH"),
    **dict.fromkeys(("fri", "friday"), "FR"),
    **dict.fromkeys(("sat", "saturday"), "SA"),
    **dict.fromkeys(("sun", "sunday"), "SU"),
}
# Longest spellings first, so "thursday" is never read as "thu" plus leftovers.
_DAY: Final = "(?:" + "|".join(sorted(_DAY_NAMES, key=len, reverse=True)) + r")\.?"
_DASH: Final = "(?:-|\u2013|to)"  # hyphen, en dash or the word
_TIME: Final = r"(?:\d{1,2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?|noon)"
_HOURS_SEGMENT: Final = re.compile(
    rf"\b(?P<days>{_DAY}(?:\s*(?:{_DASH}|,|&|and|/)\s*{_DAY})*)\s*:?\s*"
    rf"(?P<opens>{_TIME})\s*{_DASH}\s*(?P<closes>{_TIME})(?![\w:])",
    re.IGNORECASE,
)
_DAY_TOKEN: Final = re.compile(rf"{_DAY}|-|\u2013|\bto\b", re.IGNORECASE)
_CLOCK: Final = re.compile(r"^(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<meridiem>[ap])?", re.IGNORECASE)


def parse_hours(text: str) -> list[dict[str, str]]:
    """Turn opening hours such as ``"Mon-Sat 8am-4pm"`` into weekly HSDS schedules.

    Each ``<days> <opens>-<closes>`` segment gives one schedule with ``freq``, ``byday``
    (weekday order), ``opens_at`` and ``closes_at`` (24-hour ``HH:MM``) and ``description`` (the
    whole text, so nothing the segments miss is lost). Text without a readable segment gives
    one schedule holding only the description.
    """
    text = " ".join(text.split())
    schedules = []
    for match in _HOURS_SEGMENT.finditer(text):
        times = _time_range(match["opens"], match["closes"])
        if times is not None:
            byday = ",".join(_days(match["days"]))
            schedules.append(
                {
                    "freq": "WEEKLY",
                    "byday": byday,
                    "opens_at": times[0],
                    "closes_at": times[1],
                    "description": text,
                }
            )
    return schedules or [{"description": text}]


def _days(text: str) -> list[str]:
    tokens = [token.lower().rstrip(".") for token in _DAY_TOKEN.findall(text)]
    codes: set[str] = set()
    index = 0
    while index < len(tokens):
        start = _WEEK.index(_DAY_NAMES[tokens[index]])
        if index + 2 < len(tokens) and tokens[index + 1] not in _DAY_NAMES:
            # Ranges may wrap the week end: "Fri-Mon" is FR, SA, SU, MO.
            span = (_WEEK.index(_DAY_NAMES[tokens[index + 2]]) - start) % 7
            codes.update(_WEEK[(start + step) % 7] for step in range(span + 1))
            index += 3
        else:
            codes.add(_WEEK[start])
            index += 1
    return [code for code in _WEEK if code in codes]


def _time_range(opens_text: str, closes_text: str) -> tuple[str, str] | None:
    closes = _clock(closes_text, None)
    opens = _clock(opens_text, closes[2] if closes else None)
    # "11-2pm": the closing meridiem only carries over when it keeps opening before closing.
    if opens and closes and opens[2] is None and closes[2] == "p" and opens[0] > closes[0]:
        opens = _clock(opens_text, "a")
    if opens is None or closes is None or opens[:2] == closes[:2]:
        return None
    # Without am/pm, "9-5" closing before it opens is ambiguous; explicit overnights stay.
    if opens[2] is None and closes[2] is None and closes[:2] < opens[:2]:
        return None
    return f"{opens[0]:02d}:{opens[1]:02d}", f"{closes[0]:02d}:{closes[1]:02d}"


def _clock(text: str, default_meridiem: str | None) -> tuple[int, int, str | None] | None:
    """Return (hour, minute, meridiem as written) in 24-hour time, or None if it is no time."""
    if text.strip().lower() == "noon":
        return 12, 0, "p"
    match = _CLOCK.match(text.strip())
    if match is None:
        return None
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    written = match["meridiem"].lower() if match["meridiem"] else None
    meridiem = written or default_meridiem
    if minute > 59 or (meridiem is None and hour > 23) or (meridiem and not 1 <= hour <= 12):
        return None
    if meridiem is None:
        return hour, minute, None
    return hour % 12 + (12 if meridiem == "p" else 0), minute, written
