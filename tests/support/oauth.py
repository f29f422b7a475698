"""An identity provider's part in the tests: RSA keys made here, their JWKS (as a file, or served over HTTP on
127.0.0.1) and the access tokens it would sign — no real provider needed."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.test.example/realms/shop"
AUDIENCE = "vy-finance-payments"
HS256_SECRET = "a-shared-secret-of-at-least-32-bytes-for-hs256!"
ALL_SCOPES = "payments:read payments:write payments:refund"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    """RSA signing keys by kid, and the tokens they sign."""

    def __init__(self, *kids: str) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        for kid in kids or ("key-1",):
            self.add_key(kid)

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def public_pem(self, kid: str = "key-1") -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def token(
        self,
        client: str = "shop-backend",
        scope: str | None = ALL_SCOPES,
        *,
        kid: str | None = "key-1",
        key: rsa.RSAPrivateKey | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """An RS256 access token as the provider signs it; `claims` override (or add to) the usual ones."""
        body = access_claims(client, scope, drop=drop, **claims)
        headers = {"kid": kid} if kid is not None else {}
        # A kid it does not have is signed by its first key: a real signature under a name the JWKS lacks.
        signing_key = key or self.keys.get(kid or "") or next(iter(self.keys.values()))
        return jwt.encode(body, signing_key, algorithm="RS256", headers=headers)


def access_claims(client: str, scope: str | None, *, drop: tuple[str, ...] = (), **claims: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "client_id": client,
        "sub": f"service-account-{client}",
    }
    if scope is not None:
        body["scope"] = scope
    body.update(claims)
    for name in drop:
        body.pop(name, None)
    return body


def hs256_token(
    client: str = "hs-client", scope: str | None = ALL_SCOPES, secret: str = HS256_SECRET, **claims: Any
) -> str:
    return jwt.encode(access_claims(client, scope, **claims), secret, algorithm="HS256")


def forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: `alg: none`, or HS256 keyed with a public key's PEM (alg confusion)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


class JwksServer:
    """The provider's JWKS endpoint on 127.0.0.1; counts the fetches."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps(server.provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    @contextlib.contextmanager
    def running(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
