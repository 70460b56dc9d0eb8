"""An app that reads its secrets from SECRETS_PATH and keeps state in its
home folder, as apps of the original platform do."""

import hashlib
import json
import os
from pathlib import Path

from flask import Flask, jsonify, request

app = Flask(__name__)
SECRETS = json.loads(Path(os.environ["SECRETS_PATH"]).read_text())
STATE = Path.home() / ".local" / "share" / "counter"
STATE.parent.mkdir(parents=True, exist_ok=True)


@app.get("/health")
def health():
    return "OK"


@app.get("/greeting")
def greeting():
    return jsonify(greeting=SECRETS["greeting"])


@app.get("/key-digest")
def key_digest():
    return jsonify(sha256=hashlib.sha256(SECRETS["api_key"].encode()).hexdigest())


@app.post("/count")
def count():
    value = int(STATE.read_text()) if STATE.exists() else 0
    value += int(request.get_json().get("by", 1))
    STATE.write_text(str(value))
    return jsonify(count=value, home=str(Path.home()))
