"""The Kafka door: the relay process (`python -m kafka_relay`) and the reply its tasks publish.

Requests come in on the nine operation topics; each is validated and handed to its Celery task, and the
worker that runs the task publishes the reply on `<operation>-response` (or the NestJS reply topic).
"""
