import requests


def test_health(url):
    assert requests.get(f"{url}/health", timeout=30).json() == {"status": "ok"}


def test_items_round_trip(url):
    put = requests.put(f"{url}/items/7", json={"name": "tea", "price": 2.5}, timeout=30)
    assert put.status_code == 200
    got = requests.get(f"{url}/items/7", timeout=30).json()
    assert got == {"id": 7, "name": "tea", "price": 2.5}


def test_bad_bodies_are_refused_by_validation(url):
    response = requests.put(f"{url}/items/8", json={"name": "tea"}, timeout=30)
    assert response.status_code == 422


def test_missing_items_are_404(url):
    assert requests.get(f"{url}/items/999", timeout=30).status_code == 404
