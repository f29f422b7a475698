"""The payment events publisher: moves the outbox (domain/payment_events.py) to Kafka; it decides nothing."""
