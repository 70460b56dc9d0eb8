import requests


def test_hello(url):
    response = requests.get(f"{url}/", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"message": "Hello world"}


def test_other_origins_may_call_it(url):
    response = requests.get(
        f"{url}/", headers={"Origin": "https://example.org"}, timeout=30
    )
    assert response.headers["Access-Control-Allow-Origin"] in {"*", "https://example.org"}


def test_notes_are_kept(url):
    for text in ["first", "second"]:
        assert requests.post(f"{url}/notes", json={"text": text}, timeout=30).status_code == 201
    assert requests.get(f"{url}/notes", timeout=30).json()[-2:] == ["first", "second"]
