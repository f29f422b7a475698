"""Baselines measured in the same run as the service, for the ratios in RESULTS.md.

- `sync_peer`: a minimal synchronous Flask app (gunicorn sync workers) that calls Stripe and writes the row in
  the request — what the Celery design is compared with for creates (W1).
- `direct_read`: the REST door and the Kafka relay with their read operations run in-process, without the Celery
  hop — what R1 and R2 are compared with.
- `kafka_ceiling`: a trivial responder answering each request topic straight from its consumer loop — the Kafka
  rig's own ceiling (broker plus client), for W2 and R2.
- `nestjs`: the platform's original NestJS service, built from its monorepo, on the web app's cart creates over
  Kafka — what W3 is compared with (issue 27).
"""
