"""What the three doors (api/, kafka_relay/, socket_door/) share: API-key and token checks, `run_operation` and the
wait for its reply, the rate limits' storage, the idempotency key's shape and the error envelope.

The doors import this package and never each other; nothing here imports a door.
"""
