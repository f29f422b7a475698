"""The Celery app and one task per operation of the registry."""
