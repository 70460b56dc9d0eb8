"""A model served over Flask: a scikit-learn regression fitted at start on a
pandas data frame, predicting on request."""

import numpy as np
import pandas as pd
from flask import Flask, jsonify, request
from sklearn.linear_model import LinearRegression

app = Flask(__name__)

FRAME = pd.DataFrame({"x": np.arange(0, 50, dtype=float)})
FRAME["y"] = 3.0 * FRAME["x"] + 2.0
MODEL = LinearRegression().fit(FRAME[["x"]], FRAME["y"])


@app.get("/")
def health():
    return "OK"


@app.post("/predict")
def predict():
    values = pd.DataFrame({"x": request.get_json()["x"]}, dtype=float)
    return jsonify(prediction=MODEL.predict(values).round(6).tolist())


@app.get("/describe")
def describe():
    return jsonify(FRAME["y"].describe().round(6).to_dict())
