import os

import pytest


@pytest.fixture(scope="session")
def url():
    return os.environ.get("TEST_REMOTE_URL", "http://localhost:5000").rstrip("/")
