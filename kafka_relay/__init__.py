"""The Kafka door: the relay process (`python -m kafka_relay`); its plumbing (wire, producer, config) is messaging/.

Requests come in on the nine operation topics; each is validated and handed to its Celery task, and the
worker that runs the task publishes the reply on `<operation>-response` (or the NestJS reply topic).
"""
