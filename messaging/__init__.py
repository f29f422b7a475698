"""Kafka plumbing shared by every process that talks to Kafka: client configuration, topic creation, the wire
format, the idempotent producer under gevent, and the reply a task publishes.

Used by the Kafka door (kafka_relay/), the events publisher, the socket door's status feed, the workers' replies and
the operator's view; it imports no door.
"""
