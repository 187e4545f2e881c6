"""Signing in through an identity provider: OpenID Connect authorisation code, offline.

A small identity provider runs in a thread (JWKS and token endpoints, RSA keys); the
workbench is the real app with the API's JWKS settings and the workbench's client settings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.app import create_app
from api.server import running_in_thread
from api.settings import ApiSettings
from api.web.settings import OidcSettings
from domain.application import CaseWork
from jiuzhu.settings import Settings

pytestmark = pytest.mark.postgres

ISSUER = "https://idp.example/realms/civil-affairs"
AUDIENCE = "jiuzhu-api"
CLIENT = "jiuzhu-workbench"


class Provider:
    """The identity provider's side: its key, and what each code was issued for."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, list[str]]] = []

    def sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "k1"})

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    idp = Provider()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, idp.jwks())

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            idp.requests.append(form)
            grant = idp.codes.pop(form["code"][0], None)
            if grant is None:
                self._send(400, {"error": "invalid_grant"})
                return
            self._send(200, grant)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def client(app: CaseWork, tmp_path: Path, provider: tuple[Provider, str]) -> Iterator[httpx.Client]:
    _, url = provider
    api = ApiSettings(jwks_url=f"{url}/jwks", issuer=ISSUER, audience=AUDIENCE)
    web = create_app(Settings(data_dir=tmp_path), casework=app, api_settings=api)
    web.state.oidc = OidcSettings(
        authorization_url=f"{ISSUER}/protocol/openid-connect/auth",
        token_url=f"{url}/token",
        client_id=CLIENT,
        redirect_url="http://workbench.example/web/oidc/callback",
    )
    with running_in_thread(web) as base, httpx.Client(base_url=base, timeout=30) as http:
        yield http


def _start(client: httpx.Client) -> dict[str, str]:
    response = client.get("/web/login")
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.netloc == "idp.example"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT
    assert query["code_challenge_method"] == "S256"
    return query


def _grant(idp: Provider, nonce: str, role: str = "approver", **id_claims: Any) -> dict[str, str]:
    return {
        "id_token": idp.sign({"aud": CLIENT, "sub": "li.lei", "nonce": nonce, **id_claims}),
        "access_token": idp.sign({"aud": AUDIENCE, "sub": "li.lei", "role": role}),
        "token_type": "Bearer",
    }


def test_authorisation_code_flow_signs_in_with_the_providers_token(
    client: httpx.Client, provider: tuple[Provider, str]
) -> None:
    idp, _ = provider
    query = _start(client)
    idp.codes["code-1"] = _grant(idp, query["nonce"])
    response = client.get("/web/oidc/callback", params={"code": "code-1", "state": query["state"]})
    assert response.status_code == 303, response.text
    assert "HttpOnly" in response.headers["set-cookie"]
    inbox = client.get("/web/inbox")
    assert inbox.status_code == 200
    assert "li.lei" in inbox.text
    assert "审批人员" in inbox.text
    exchanged = idp.requests[-1]
    assert exchanged["grant_type"] == ["authorization_code"]
    assert exchanged["code_verifier"][0]  # PKCE: the verifier behind the challenge


TAMPERED = {
    "state": "state returned by the identity provider does not match",
    "nonce": "nonce does not match",
    "audience": "ID token is not valid",
    "role": "no known role",
    "code": "refused the code",
}


def test_a_sign_in_that_cannot_be_trusted_is_refused_with_the_reason(
    client: httpx.Client, provider: tuple[Provider, str]
) -> None:
    idp, _ = provider
    for tamper, words in TAMPERED.items():
        query = _start(client)
        grant = _grant(idp, "another-nonce" if tamper == "nonce" else query["nonce"],
                       role="mayor" if tamper == "role" else "approver")  # fmt: skip
        if tamper == "audience":
            grant["id_token"] = idp.sign(
                {"aud": "someone-else", "sub": "x", "nonce": query["nonce"]}
            )
        if tamper != "code":
            idp.codes[f"code-{tamper}"] = grant
        state = "forged" if tamper == "state" else query["state"]
        response = client.get(
            "/web/oidc/callback", params={"code": f"code-{tamper}", "state": state}
        )
        assert response.status_code == 401, tamper
        assert words in response.text.replace("&#39;", "'"), tamper
        assert client.get("/web/inbox").status_code == 303  # still not signed in
