"""A Flask API that browsers of other origins may call (Flask-Cors), with a
small SQLite-backed store (Flask-SQLAlchemy), as the image provides both."""

import os

from flask import Flask, jsonify, request
from flask_cors import CORS
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
CORS(app)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(
    os.environ.get("TMP_PATH", "/tmp"), "notes.db"
)
db = SQLAlchemy(app)


class Note(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    text = db.Column(db.String(200), nullable=False)


with app.app_context():
    db.create_all()


@app.get("/health")
def health():
    return "OK"


@app.get("/")
def hello():
    return jsonify(message="Hello world")


@app.post("/notes")
def add_note():
    note = Note(text=request.get_json()["text"])
    db.session.add(note)
    db.session.commit()
    return jsonify(id=note.id), 201


@app.get("/notes")
def list_notes():
    return jsonify([n.text for n in Note.query.order_by(Note.id).all()])
