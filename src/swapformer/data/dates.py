"""Date normalisation: a date written in one of many human formats -> ISO 8601 ``YYYY-MM-DD``.

Every format is unambiguous: years always have four digits, and numeric formats either start with the
year (``2021/03/05``) or are documented as day.month.year (``5.3.2021``), never dd/mm vs mm/dd. Weekday
names, when present, are the true weekday of the date. Month and weekday names are always English,
independent of the locale.
"""

from __future__ import annotations

import random
from datetime import date

__all__ = ["DATE_TEMPLATES", "FIRST_DATE", "LAST_DATE", "format_date", "ordinal", "sample_date_pair"]

FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2099, 12, 31)

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
# Indexed by date.weekday(): Monday is 0.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Fields: month "March", mon "Mar", day "5", day2 "05", dayth "5th", m "3", m2 "03", year "2021",
# weekday "Friday", wkd "Fri". Comments show 2021-03-05 (a Friday).
DATE_TEMPLATES = (
    "{month} {day}, {year}",  # March 5, 2021
    "{month} {day} {year}",  # March 5 2021
    "{day} {month} {year}",  # 5 March 2021
    "{mon} {day}, {year}",  # Mar 5, 2021
    "{mon} {day} {year}",  # Mar 5 2021
    "{day} {mon} {year}",  # 5 Mar 2021
    "{day2}-{mon}-{year}",  # 05-Mar-2021
    "{month} {dayth}, {year}",  # March 5th, 2021
    "{dayth} {month} {year}",  # 5th March 2021
    "{dayth} of {month} {year}",  # 5th of March 2021
    "the {dayth} of {month}, {year}",  # the 5th of March, 2021
    "{weekday}, {month} {day}, {year}",  # Friday, March 5, 2021
    "{weekday} {day} {month} {year}",  # Friday 5 March 2021
    "{weekday}, the {dayth} of {month} {year}",  # Friday, the 5th of March 2021
    "{wkd}, {day2} {mon} {year}",  # Fri, 05 Mar 2021 (e-mail style)
    "{wkd} {mon} {day} {year}",  # Fri Mar 5 2021
    "{year}/{m2}/{day2}",  # 2021/03/05
    "{year}.{m2}.{day2}",  # 2021.03.05
    "{year}{m2}{day2}",  # 20210305 (ISO 8601 basic format)
    "{day}.{m}.{year}",  # 5.3.2021 (day.month.year)
    "{day2}.{m2}.{year}",  # 05.03.2021 (day.month.year)
)
_CASES = (str, str.lower, str.upper)


def ordinal(day: int) -> str:
    """English ordinal of a day of the month: 1 -> "1st", 12 -> "12th", 22 -> "22nd"."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def format_date(day: date, *, template: str) -> str:
    """Write ``day`` with one of :data:`DATE_TEMPLATES` (or any template using the same fields)."""
    month = _MONTHS[day.month - 1]
    weekday = _WEEKDAYS[day.weekday()]
    return template.format(
        month=month,
        mon=month[:3],
        day=day.day,
        day2=f"{day.day:02d}",
        dayth=ordinal(day.day),
        m=day.month,
        m2=f"{day.month:02d}",
        year=f"{day.year:04d}",
        weekday=weekday,
        wkd=weekday[:3],
    )


def sample_date_pair(rng: random.Random) -> tuple[str, str]:
    """Draw a uniform date in [1900-01-01, 2099-12-31], a random format and a random letter case.

    Args:
        rng: The random source.

    Returns:
        ``(written date, ISO 8601 date)``, e.g. ``("the 5th of march, 2021", "2021-03-05")``.
    """
    span = LAST_DATE.toordinal() - FIRST_DATE.toordinal() + 1
    day = date.fromordinal(FIRST_DATE.toordinal() + rng.randrange(span))
    template = rng.choice(DATE_TEMPLATES)
    case = rng.choice(_CASES)
    return case(format_date(day, template=template)), day.isoformat()
