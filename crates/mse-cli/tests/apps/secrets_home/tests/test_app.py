import hashlib

import requests


def test_the_secrets_reached_the_app(url):
    assert requests.get(f"{url}/greeting", timeout=30).json() == {"greeting": "Bonjour"}
    digest = requests.get(f"{url}/key-digest", timeout=30).json()["sha256"]
    assert digest == hashlib.sha256(b"k-4f1c2a9e").hexdigest()


def test_the_home_folder_is_writable_and_kept(url):
    first = requests.post(f"{url}/count", json={"by": 2}, timeout=30).json()["count"]
    second = requests.post(f"{url}/count", json={"by": 3}, timeout=30).json()["count"]
    assert second == first + 3
