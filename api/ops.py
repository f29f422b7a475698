"""The operator page, /ops/: server-rendered (Jinja), one small script (times in the operator's time zone; UTC
without it); behind a login (api/ops_auth.py: an OPS_USERS name and password, or an API key, given to the
browser's Basic prompt). Its support actions are api/ops_actions.py's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, abort, g, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.ops_format import money, when
from domain.schemas import OBJECT_ID_PATTERN
from operations import audit
from operations.view import OPS_TTL_S, intent_timeline, recent_events, recent_intents, snapshot

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
    try:
        return recent_intents(RECENT)
    except Exception:  # the database away: the readiness table says so
        return None


def _events() -> list[dict[str, Any]] | None:
    from models import unit_of_work

    try:
        with unit_of_work():
            return recent_events()
    except Exception:  # the database away: the readiness table says so
        return None


def _page(template: str, refresh: bool = True, **context: Any) -> Response:
    page = render_template(
        template,
        age=_age,
        money=money,
        when=when,
        money_fields=MONEY_FIELDS,
        refresh_s=int(OPS_TTL_S) if refresh else None,
        operator=g.get("operator"),
        **context,
    )
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"  # always the present, never a proxy's copy
    return response


@ops.get("/")
def index() -> BaseResponse:  # a redirect is werkzeug's Response, a page Flask's (a subclass)
    wanted = request.args.get("intent", "").strip()
    if wanted:
        return redirect(url_for("ops.intent", payment_intent_id=wanted))
    view = snapshot()
    # A page with forms does not refresh itself under an operator typing into them.
    can_act = bool(g.operator.can_act)
    return _page(
        "ops/index.html",
        refresh=not can_act,
        view=view,
        recent=_recent(),
        events=_events(),
        now=dt.datetime.now(dt.UTC),
    )


@ops.get("/intents/<payment_intent_id>")
def intent(payment_intent_id: str) -> Response:
    import re

    timeline = intent_timeline(payment_intent_id) if re.fullmatch(OBJECT_ID_PATTERN, payment_intent_id) else None
    if timeline is None:
        abort(404)
    done = request.args.get("done", "")
    return _page(
        "ops/intent.html",
        refresh=not g.operator.can_act,
        timeline=timeline,
        trail=audit.entries(payment_intent_id),
        done=audit.entry(int(done)) if done.isdigit() else None,
    )


from api import ops_actions  # noqa: E402, F401  (its routes join this blueprint)
