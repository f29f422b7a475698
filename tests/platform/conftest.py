"""The platform's contract tests use the doors' shared stacks (tests/support/stacks.py: REST under gunicorn, the
relay over Tansu) and the Socket.IO stack (its own Tansu, API and two Socket.IO processes) for the web app's events."""

from __future__ import annotations

from tests.sockets.conftest import socket_stack  # noqa: F401
