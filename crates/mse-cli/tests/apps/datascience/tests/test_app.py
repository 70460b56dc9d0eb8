import requests


def test_health(url):
    assert requests.get(f"{url}/", timeout=30).text == "OK"


def test_the_fitted_model_predicts_the_line(url):
    response = requests.post(f"{url}/predict", json={"x": [0, 10, 100]}, timeout=30)
    assert response.status_code == 200
    assert response.json()["prediction"] == [2.0, 32.0, 302.0]


def test_pandas_describes_the_frame(url):
    described = requests.get(f"{url}/describe", timeout=30).json()
    assert described["count"] == 50
    assert described["min"] == 2.0
    assert described["max"] == 149.0
