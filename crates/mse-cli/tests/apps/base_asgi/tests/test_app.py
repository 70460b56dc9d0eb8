import requests


def test_health(url):
    assert requests.get(f"{url}/health", timeout=30).json() == {"status": "ok"}


def test_echo_reads_the_whole_body(url):
    response = requests.post(f"{url}/echo", data=b"abc" * 1000, timeout=30)
    assert response.json() == {"length": 3000, "reversed": "cba" * 1000}


def test_unknown_paths_are_404(url):
    assert requests.get(f"{url}/nothing", timeout=30).status_code == 404
