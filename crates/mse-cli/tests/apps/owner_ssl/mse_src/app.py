"""An app served with its owner's own certificate, at its own domain."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/health")
def health():
    return "OK"


@app.get("/")
def index():
    return jsonify(host=request.host, scheme=request.scheme)
