"""Currencies Stripe charges in, with their minor-unit exponent and Stripe's minimum charge: the reference data the
seed writes (models/schema.py) and the domain's amount rules read, so the models import no domain module."""

from __future__ import annotations

# Stripe's zero- and three-decimal currencies; every other supported one has two decimals.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())

SUPPORTED = frozenset(
    """usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
    byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd
    gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp
    lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab
    pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs
    tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw""".split()
)

# Stripe's published minimum charge amounts, in minor units; others are left to Stripe to judge.
MINIMUM_CHARGE = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}


def exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's major unit."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def minimum_charge(currency: str) -> int:
    return MINIMUM_CHARGE.get(currency, 1)


# Amounts Stripe accepts only in steps: three-decimal currencies must end in 0; ISK is passed as two-decimal (for
# backward compatibility) but charged in whole krónur, so it must end in 00.
AMOUNT_STEP = {**{code: 10 for code in THREE_DECIMAL}, "isk": 100}


def amount_step(currency: str) -> int:
    """The smallest step (in minor units) Stripe accepts amounts of this currency in."""
    return AMOUNT_STEP.get(currency, 1)
