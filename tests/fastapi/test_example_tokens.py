"""The example app's token checks answer 401, not 500, to credentials with non-ASCII characters."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from fastapi.requests import HTTPConnection

from examples.fastapi_app.security import COOKIE, require_operator, tokens_match

GIVEN = ["sécret", "секрет", "秘密", "s\u00e9cret-but-longer", ""]


@pytest.mark.parametrize("given", GIVEN)
def test_tokens_match_compares_any_text(given: str) -> None:
    assert not tokens_match(given, "secret")
    assert tokens_match(given, given)


def _connection(headers: list[tuple[bytes, bytes]]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": headers, "path": "/", "query_string": b""})


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", "Bearer sécret".encode("latin-1"))],
        [(b"cookie", f"{COOKIE}=s%C3%A9cret".encode())],
        [(b"cookie", f"{COOKIE}=sécret".encode("latin-1"))],
    ],
    ids=["bearer", "cookie-escaped", "cookie-latin-1"],
)
def test_non_ascii_credentials_are_refused_with_401(
    monkeypatch: pytest.MonkeyPatch, headers: list[tuple[bytes, bytes]]
) -> None:
    monkeypatch.setenv("EXAMPLE_API_TOKEN", "secret")
    with pytest.raises(HTTPException) as refused:
        require_operator(_connection(headers))
    assert refused.value.status_code == 401


def test_the_right_token_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_API_TOKEN", "secret")
    require_operator(_connection([(b"authorization", b"Bearer secret")]))
    require_operator(_connection([(b"cookie", f"{COOKIE}=secret".encode())]))
