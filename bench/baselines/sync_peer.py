"""The synchronous peer for W1: Stripe call and row write inside the request, gunicorn sync workers.

`gunicorn -k sync -w $((2 * cores + 1)) 'bench.baselines.sync_peer:create_app()'`

Minimal on purpose: no Celery, no idempotency record, one Stripe call and one transaction (the intent and its
ztracking snapshot), through the service's own Stripe client and models so that only the architecture differs.
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, jsonify, request

import stripe_client
from domain.ids import new_id
from domain.intent_state import apply_stripe_intent
from domain.payment_intents import create_params
from domain.schemas import CreatePaymentIntentInput, parse_input
from errors import OperationError
from models import Customer, PaymentIntent, PaymentMethod, bind_database, unit_of_work, write_transaction
from models.payment_intents import save_with_history
from settings import get_settings


def create_app() -> Flask:
    settings = get_settings()
    bind_database(settings)
    app = Flask(__name__)
    keys = {f"Bearer {key}" for key in settings.api_keys}

    @app.errorhandler(OperationError)
    def _error(exc: OperationError) -> Response:
        response = jsonify({"error": {"code": exc.code, "message": exc.message, "details": exc.details}})
        response.status_code = exc.to_error()["status"]
        return response

    @app.post("/payment-intents")
    def create_payment_intent() -> tuple[Response, int]:
        if request.headers.get("Authorization") not in keys:
            raise OperationError("unauthorized", "A valid API key is required.")
        inp = parse_input(CreatePaymentIntentInput, request.get_json(silent=True))
        with unit_of_work():
            customer = Customer.get(Customer.platform_customer_id == inp.customer_id)
            method = PaymentMethod.get(PaymentMethod.customer_id == inp.customer_id, PaymentMethod.is_default == True)  # noqa: E712
            intent_id = new_id("payment_intent")
            # The same parameters the service sends (domain.payment_intents), without its claim around them.
            params = {
                **create_params(inp, customer.stripe_customer_id, intent_id, None),
                "payment_method": method.stripe_payment_method_id,
            }
            key = request.headers.get("Idempotency-Key") or str(uuid.uuid4())
            stripe_intent = stripe_client.create_payment_intent(params, idempotency_key=f"sync-{key}")
            intent = PaymentIntent(
                id=intent_id,
                customer_id=inp.customer_id,
                stripe_customer_id=customer.stripe_customer_id,
                amount=inp.amount,
                currency=inp.currency,
                capture_method=inp.capture_method,
                payment_method_id=method.id,
                metadata=inp.metadata,
            )
            apply_stripe_intent(intent, stripe_intent)
            with write_transaction():
                save_with_history(intent, cause="create-payment-intent", create=True)
        return jsonify({**intent.to_payload(), "clientSecret": stripe_intent.get("client_secret")}), 201

    return app
