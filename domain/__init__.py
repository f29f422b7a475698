"""Plain domain functions: every decision about money, testable without Celery."""
