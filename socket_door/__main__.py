"""`python -m socket_door`: the Socket.IO door in a process of its own (gevent; WebSocket transport)."""

from gevent import monkey

monkey.patch_all()  # before anything opens a socket: Redis, the broker and the WSGI server cooperate

import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from observability.logs import configure_logging  # noqa: E402
from observability.sentry import init_sentry  # noqa: E402
from settings import get_settings  # noqa: E402
from socket_door.server import SocketDoor  # noqa: E402

log = logging.getLogger("socket_door")


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "sockets")
    init_sentry(settings, "sockets")
    door = SocketDoor(settings)
    feed = gevent.spawn(door.feed.run_forever)
    gevent.spawn(door.sweep_expired)
    # No access log: a token may travel in a query string of a client that sends it there.
    server = WSGIServer((settings.socket_host, settings.socket_port), door.app, log=None, error_log=log)

    def stop() -> None:
        log.info("stopping: no new connections; the status feed leaves its group")
        door.feed.stopping = True
        server.stop(timeout=5)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    log.info("Socket.IO door on %s:%d, namespace /finance-payments", settings.socket_host, settings.socket_port)
    server.serve_forever()
    feed.join(timeout=10)


main()
