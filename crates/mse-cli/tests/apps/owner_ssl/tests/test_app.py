import requests


def test_served_at_its_own_domain_with_its_owners_certificate(url):
    # REQUESTS_CA_BUNDLE holds the owner's CA: verification would fail
    # against any other certificate.
    response = requests.get(f"{url}/", timeout=30)
    assert response.status_code == 200
    assert response.json()["host"].split(":")[0] == "shop.localhost"


def test_health(url):
    assert requests.get(f"{url}/health", timeout=30).text == "OK"
