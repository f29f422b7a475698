"""The words of the OpenAPI document: what each operation does, one example of each, what each field means.

Kept apart from api/openapi.py (which builds the document from the registry and the schemas); a test checks that
every operation has its summary and example and every field its description.
"""

from __future__ import annotations

from typing import Any

PI = "vypi_01jcv4w6sd1n2x3y4z5a6b7c8d"
RE = "vyre_01jcv4x9ab1c2d3e4f5g6h7j8k"
PM = "vypm_01jcv4v2pq1r2s3t4u5v6w7x8y"
AT = "vyat_01jcv4y3mn1p2q3r4s5t6u7v8w"

SUMMARIES: dict[str, str] = {
    "create-payment-intent": "Create a payment intent for a customer; with `confirm` (and a vaulted card) it pays.",
    "get-payment-intent": "A payment intent, with its attempts.",
    "get-ztracking-payment-intent": "Every version of a payment intent (its ztracking history), oldest first.",
    "create-refund": "Refund all or part of a captured payment (never more than was captured and not refunded).",
    "get-refund": "A refund.",
    "process-stripe-webhook": "Stripe's signed events; applied once, never backwards.",
    "create-payment-method": "Vault a card Stripe.js turned into a `pm_…` for a customer (one per fingerprint).",
    "list-payment-methods": "A customer's vaulted cards, newest first.",
    "delete-payment-method": "Detach a vaulted card at Stripe and forget it.",
    "confirm-payment-intent": "Confirm (pay) an intent; one already paid or authorised answers where it stands.",
    "capture-payment-intent": "Capture an authorised (manual-capture) payment, all or part of it.",
    "cancel-payment-intent": "Cancel a payment not yet captured (a captured one is refunded instead).",
    "get-payment-intent-status": "The short status of a payment: what the gateway pushes to browsers.",
    "list-payment-intents": "A customer's payment intents, newest first, filtered.",
    "list-refunds": "A payment intent's refunds, oldest first.",
    "retry-payment-attempt": "Run a failed confirm or capture attempt again, as a new attempt.",
    "payment-status-update": "Read the intent from Stripe and apply what Stripe says (never the status sent here).",
}

# Keys are the operation's fields (path, query or body) by their camelCase names.
EXAMPLES: dict[str, dict[str, Any]] = {
    "create-payment-intent": {
        "customerId": "customer-42",
        "amount": 2500,
        "currency": "usd",
        "paymentMethodId": PM,
        "confirm": True,
        "orderId": "order-1001",
    },
    "get-payment-intent": {"paymentIntentId": PI},
    "get-ztracking-payment-intent": {"paymentIntentId": PI},
    "create-refund": {"paymentIntentId": PI, "amount": 1000, "reason": "requested_by_customer"},
    "get-refund": {"refundId": RE},
    "process-stripe-webhook": {"id": "evt_1Q2w3E4r5T6y7U8i", "type": "payment_intent.succeeded"},
    "create-payment-method": {
        "customerId": "customer-42",
        "stripePaymentMethodId": "pm_1Q2w3E4r5T6y7U8iO9p0",
        "setAsDefault": True,
    },
    "list-payment-methods": {"customerId": "customer-42", "limit": 10},
    "delete-payment-method": {"paymentMethodId": PM},
    "confirm-payment-intent": {"paymentIntentId": PI, "paymentMethodId": PM},
    "capture-payment-intent": {"paymentIntentId": PI, "amountToCapture": 1500},
    "cancel-payment-intent": {"paymentIntentId": PI, "cancellationReason": "requested_by_customer"},
    "get-payment-intent-status": {"paymentIntentId": PI},
    "list-payment-intents": {"customerId": "customer-42", "status": "succeeded", "limit": 20},
    "list-refunds": {"paymentIntentId": PI},
    "retry-payment-attempt": {"attemptId": AT},
    "payment-status-update": {"paymentIntentId": PI},
}

FIELD_DOCS: dict[str, str] = {
    "Idempotency-Key": "Same key and body replays the first answer for 24 h; another body is refused (422).",
    "Stripe-Signature": "Stripe's signature of the raw body (checked against STRIPE_WEBHOOK_SECRET).",
    "X-Trace-Id": "Your trace id (1-128 of A-Z a-z 0-9 . _ : -); a W3C traceparent header is read too.",
    "amount": "In the currency's minor unit (cents for usd), as Stripe counts it.",
    "amountCapturable": "What an authorised manual-capture payment can still capture.",
    "amountReceived": "What was captured.",
    "amountRefunded": "What was refunded (refunds in progress included).",
    "amountToCapture": "At most amountCapturable; the rest of the authorisation is released. Default: all of it.",
    "attemptId": "A confirm or capture attempt of a payment intent.",
    "attemptNumber": "1 for an intent's first attempt, then 2, 3…",
    "attempts": "Every confirm and capture attempt, oldest first.",
    "brand": "The card's network (visa, mastercard…).",
    "cancellationReason": "Why the payment was canceled (Stripe's reasons).",
    "captureBefore": "When an uncaptured authorisation expires (Stripe then cancels it).",
    "captureMethod": "`automatic`: captured when confirmed; `manual`: authorised, captured later.",
    "card": "The card's non-sensitive details, as Stripe tells them.",
    "cause": "What made this version: the operation, `sync`, a Stripe event id, or the janitor.",
    "clientSecret": "For Stripe.js in the customer's browser only (3-D Secure); never stored by the service.",
    "code": "The error's code (DESIGN.md's list).",
    "confirm": "Pay at once with paymentMethodId, or the customer's default card.",
    "createdAt": "When it was created (UTC).",
    "createdGte": "Only those created at or after this time (ISO 8601 with a zone).",
    "createdLt": "Only those created before this time (ISO 8601 with a zone).",
    "currency": "ISO 4217 code Stripe charges in, lower case in answers.",
    "customerId": (
        "The platform's customer id (its Stripe Customer is made on first use); compared byte for byte (case, accents"
        " and spaces count), so no whitespace at either end and no control characters."
    ),
    "address": "The person's postal address (sent to their Stripe Customer).",
    "city": "City.",
    "country": "Country, ISO 3166-1 alpha-2 (e.g. US).",
    "customerDetails": "The platform's checkout: who pays, known by e-mail (their customer is found or made by it).",
    "email": "The person's e-mail: their Stripe Customer and the receipt (never logged).",
    "firstName": "The person's first name.",
    "items": (
        "The platform's cart: amount and currency are its total (prices are the caller's: README, security); a cart"
        " is only authorised (captureMethod manual) unless captureMethod is given."
    ),
    "lastName": "The person's last name.",
    "priceCents": "The price of one, in the currency's minor unit.",
    "quantity": "How many (at least 1).",
    "state": "State or region.",
    "street": "Street and number.",
    "zip": "Postal code.",
    "receiptEmail": "Where Stripe mails the receipt (kept on the intent for it; never logged, hashed elsewhere).",
    "returnUrl": "Where Stripe sends the browser back after 3-D Secure: https (http only for localhost, 127.0.0.1).",
    "setupFutureUsage": "Keep the card for later payments by Stripe's rules: off_session or on_session.",
    "shipping": "Who receives the goods and where, in Stripe's shape (sent to Stripe; hashed in stored requests).",
    "name": "The recipient's full name.",
    "line1": "Street address, first line.",
    "line2": "Street address, second line.",
    "postal_code": "Postal code.",
    "phone": "The recipient's phone number.",
    "ifCaptured": (
        "What a capture of a payment captured already answers: `refuse` (invalid_state; refund it instead) or"
        " `answer` (the payment as it stands, for senders that fire and forget). The platform's own services get"
        " `answer`."
    ),
    "data": "This page's records.",
    "declineCode": "The bank's decline code, when the card was declined.",
    "deleted": "Always true: the card is detached and forgotten.",
    "description": "Free text, sent to Stripe.",
    "details": "More about the error: the fields at fault, the key to retry with…",
    "duplicate": "True when this event was already received (it was not applied again).",
    "endingBefore": "An id of this list: the page just before it (mutually exclusive with startingAfter).",
    "error": "What went wrong.",
    "errorCode": "Why the last attempt failed (e.g. card_declined), null when it did not.",
    "errorMessage": "The failure's message, fit to show the customer.",
    "eventId": "Stripe's event id.",
    "expMonth": "The card's expiry month.",
    "expYear": "The card's expiry year.",
    "expiresAt": "When the token stops being accepted (UTC).",
    "expiresIn": "Seconds until then.",
    "failureReason": "Why the refund failed, as Stripe says.",
    "fingerprint": "Stripe's fingerprint of the card number: the same card has the same one.",
    "hasMore": "Whether more records lie beyond this page, in the direction it was read.",
    "id": "The service's id (a ULID with a prefix: vypi_, vyre_, vypm_…).",
    "isDefault": "The customer's default card (confirm uses it when none is named).",
    "last4": "The card number's last four digits.",
    "lastPaymentError": "The last attempt's failure, as Stripe reported it.",
    "limit": "Records per page, 1 to 100.",
    "message": "A sentence for people; never parse it.",
    "metadata": "Your key/value pairs (at most 44; keys starting with vy_ are the service's).",
    "nextAction": "What the customer's browser must do next (3-D Secure), while requires_action.",
    "nextCursor": "Pass it as the same cursor for the next page; null when there is none.",
    "operation": "`confirm` or `capture`.",
    "orderId": "The platform's order this pays for.",
    "paymentIntentId": "A payment intent of the service (Stripe's pi_… id is accepted where it says so).",
    "paymentMethodId": (
        "A vaulted card of the service (vypm_…). The platform's confirm may send Stripe's pm_… here: it is read as"
        " stripePaymentMethodId."
    ),
    "reason": "Why the refund was made (Stripe's reasons).",
    "refundId": "A refund of the service (vyre_…).",
    "retryOf": "The attempt this one retried.",
    "setAsDefault": "Make it the customer's default card.",
    "startingAfter": "An id of this list: the page just after it (mutually exclusive with endingBefore).",
    "status": "Where it stands in Stripe's lifecycle.",
    "stripePaymentIntentId": "Stripe's id of the payment intent (pi_…).",
    "stripePaymentMethodId": (
        "Stripe's id of the card, made by Stripe.js in the browser (pm_…); a confirm vaults it for the intent's"
        " customer (not as the default) and pays with it."
    ),
    "stripeRefundId": "Stripe's id of the refund (re_…).",
    "subscriptionId": "The platform's subscription this pays for.",
    "token": "Signed; the browser passes it as auth {token} to the Socket.IO door.",
    "traceId": "The trace of the request (X-Trace-Id).",
    "type": (
        "The kind of object or event. On create-payment-method, what the caller says the card is (card, apple_pay,"
        " google_pay; ach is refused: cards only; other: unchecked), checked against Stripe."
    ),
    "updatedAt": "When it last changed (UTC).",
    "versionDate": "When this version was made (UTC).",
    "ztrackingVersion": "The intent's version: 1 when created, one more per change.",
}
