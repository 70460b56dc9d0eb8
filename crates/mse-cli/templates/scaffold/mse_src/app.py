"""A minimal Flask application, ready to be encrypted and deployed."""

from http import HTTPStatus

from flask import Flask, Response

app = Flask(__name__)


@app.get("/health")
def health():
    """Answer 200 once the app is ready: the node polls this endpoint."""
    return Response(status=HTTPStatus.OK)


@app.get("/")
def hello():
    """The app's one page."""
    return "Hello world"
