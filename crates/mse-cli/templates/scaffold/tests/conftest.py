"""Fixtures for the app's tests.

By default the tests call the app in-process through Flask's test client.
Set TEST_REMOTE_URL (and, for a self-signed certificate, REQUESTS_CA_BUNDLE),
as apps of the original MSE do, or MSE_APP_URL (and MSE_APP_CACERT), to run
the same tests against a running instance over HTTP(S).
"""

import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CODE_DIR = Path(__file__).resolve().parent.parent / "mse_src"


class Answer:
    """What a test needs of an HTTP response."""

    def __init__(self, status_code, text):
        self.status_code = status_code
        self.text = text


class FlaskClient:
    """Calls the app in-process."""

    def __init__(self):
        sys.path.insert(0, str(CODE_DIR))
        from app import app  # pylint: disable=import-outside-toplevel

        app.config.update(TESTING=True)
        self._client = app.test_client()

    def get(self, path):
        response = self._client.get(path)
        return Answer(response.status_code, response.get_data(as_text=True))


class HttpClient:
    """Calls a running instance of the app."""

    def __init__(self, url, cafile):
        self._url = url.rstrip("/")
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None

    def get(self, path):
        try:
            with urllib.request.urlopen(
                self._url + path, context=self._context, timeout=30
            ) as response:
                return Answer(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode())


@pytest.fixture(name="client")
def fixture_client():
    """A client for the app: in-process, or remote when MSE_APP_URL is set."""
    url = os.environ.get("MSE_APP_URL") or os.environ.get("TEST_REMOTE_URL")
    if url:
        cafile = os.environ.get("MSE_APP_CACERT") or os.environ.get("REQUESTS_CA_BUNDLE")
        return HttpClient(url, cafile)
    return FlaskClient()
