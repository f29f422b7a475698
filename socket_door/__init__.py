"""The Socket.IO door (the platform gateway's WebSocket dialect): `python -m socket_door`."""
