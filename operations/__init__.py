"""The operator's read model, above the service: readiness, queue depths, claims, webhooks, dead letters, the
outbox backlog and intent timelines, read by the /ops/ page, /metrics and the `payments` command.

It may import any part of the service (tasks, domain, messaging, models); nothing of the service imports it but the
pages and the command that show it.
"""
