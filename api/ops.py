"""The operator page, /ops/: server-rendered (Jinja), refreshing itself, one small script (times in the operator's
time zone; UTC without it); behind the API key (a browser
gives it as the password, or the user name, of HTTP Basic)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.ops_format import money, when
from domain.schemas import OBJECT_ID_PATTERN
from operations.view import OPS_TTL_S, intent_timeline, snapshot

ops = Blueprint("ops", __name__, template_folder="templates", url_prefix="/ops")
RECENT = 20
# The timeline's fields that are amounts: shown as money in the intent's currency.
MONEY_FIELDS = frozenset({"amount", "amountCapturable", "amountReceived", "amountRefunded"})


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _recent() -> list[dict[str, Any]] | None:
    from models import PaymentIntent

    try:
        rows = PaymentIntent.select().order_by(PaymentIntent.id.desc()).limit(RECENT)
        return [row.to_payload([]) for row in rows]
    except Exception:  # the database away: the readiness table says so
        return None


def _page(template: str, **context: Any) -> Response:
    response = make_response(
        render_template(
            template, age=_age, money=money, when=when, money_fields=MONEY_FIELDS, refresh_s=int(OPS_TTL_S), **context
        )
    )
    response.headers["Cache-Control"] = "no-store"  # always the present, never a proxy's copy
    return response


@ops.get("/")
def index() -> BaseResponse:  # a redirect is werkzeug's Response, a page Flask's (a subclass)
    wanted = request.args.get("intent", "").strip()
    if wanted:
        return redirect(url_for("ops.intent", payment_intent_id=wanted))
    return _page("ops/index.html", view=snapshot(), recent=_recent(), now=dt.datetime.now(dt.UTC))


@ops.get("/intents/<payment_intent_id>")
def intent(payment_intent_id: str) -> Response:
    import re

    timeline = intent_timeline(payment_intent_id) if re.fullmatch(OBJECT_ID_PATTERN, payment_intent_id) else None
    if timeline is None:
        abort(404)
    return _page("ops/intent.html", timeline=timeline)
