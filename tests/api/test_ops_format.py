"""The operator page's money and times: amounts in the currency's major unit with its code, times as UTC `<time>`
elements the page's script turns into the operator's time zone."""

from __future__ import annotations

import datetime as dt

import pytest

from api.ops_format import money, when


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (5000, "eur", "50.00 EUR"),
        (4105, "usd", "41.05 USD"),
        (7, "usd", "0.07 USD"),
        (0, "gbp", "0.00 GBP"),
        (5000, "jpy", "5000 JPY"),  # zero-decimal
        (5000, "KRW", "5000 KRW"),
        (5000, "kwd", "5.000 KWD"),  # three-decimal
        (1250, "bhd", "1.250 BHD"),
        (-1050, "eur", "-10.50 EUR"),
        (123456789, "eur", "1234567.89 EUR"),
    ],
)
def test_an_amount_in_minor_units_is_shown_in_the_currencys_major_unit_with_its_code(amount, currency, shown):
    assert money(amount, currency) == shown


def test_no_amount_is_a_dash_and_an_amount_without_currency_stays_in_minor_units():
    assert money(None, "eur") == "—"
    assert money(5000, None) == "5000"


def test_a_time_is_a_utc_time_element_with_the_utc_text_as_fallback_and_title():
    shown = str(when("2026-12-06T07:12:05.123Z"))
    assert shown == (
        '<time datetime="2026-12-06T07:12:05.123Z" title="2026-12-06 07:12:05 UTC">2026-12-06 07:12:05 UTC</time>'
    )
    # The models' naive datetimes are UTC; an aware one in another zone is converted.
    assert 'datetime="2026-12-06T07:12:05.000Z"' in str(when(dt.datetime(2026, 12, 6, 7, 12, 5)))
    paris = dt.datetime(2026, 12, 6, 8, 12, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert 'title="2026-12-06 07:12:05 UTC"' in str(when(paris))


def test_no_time_is_a_dash_and_text_that_is_not_a_time_is_escaped_not_parsed():
    assert str(when(None)) == "—"
    assert str(when("<b>soon</b>")) == "&lt;b&gt;soon&lt;/b&gt;"
