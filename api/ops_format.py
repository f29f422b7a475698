"""How the operator page writes money and times: an amount in the currency's major unit with its code (`50.00 EUR`,
`5000 JPY`, `5.000 KWD`), a time as a `<time>` in UTC that the page's script shows in the operator's time zone."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

from models.currency_data import exponent

NONE = "—"


def money(amount: int | None, currency: str | None) -> str:
    """Minor units as the currency writes them: two decimals mostly, none for JPY and the like, three for KWD/BHD."""
    if amount is None:
        return NONE
    if not currency:
        return str(amount)  # no currency known: the minor units, never a guessed decimal point
    digits = exponent(currency.lower())
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(int(amount)), 10**digits)
    number = f"{units}.{minor:0{digits}d}" if digits else str(units)
    return f"{sign}{number} {currency.upper()}"


def _utc(value: dt.datetime | str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    # The models keep naive datetimes in UTC (models/base.py).
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def when(value: dt.datetime | str | None) -> Markup:
    """`<time datetime="…Z" title="… UTC">… UTC</time>`: the UTC text stays where no script runs; the page's script
    shows the operator's local time and leaves UTC on hover."""
    if value is None or value == "":
        return escape(NONE)
    try:
        moment = _utc(value)
    except ValueError:
        return escape(value)  # not a time after all: shown as it is
    machine = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    human = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(machine, human, human)
