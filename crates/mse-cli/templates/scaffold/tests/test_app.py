"""Tests of the app's endpoints."""

from http import HTTPStatus


def test_health_answers_ok(client):
    assert client.get("/health").status_code == HTTPStatus.OK


def test_index_says_hello(client):
    answer = client.get("/")
    assert answer.status_code == HTTPStatus.OK
    assert answer.text == "Hello world"


def test_unknown_path_is_not_found(client):
    assert client.get("/no-such-page").status_code == HTTPStatus.NOT_FOUND
