"""`Store.location` and `repr(Store)` never show a password (the core's redaction)."""

import os

import pytest

import oncely

URL = os.environ.get("ONCELY_POSTGRES_URL")


def test_a_location_without_a_password_is_shown_as_given(tmp_path):
    path = str(tmp_path / "s.db")
    assert oncely.Store(path).location == path
    assert oncely.Store("memory").location == "memory"


@pytest.mark.skipif(not URL, reason="ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)")
def test_a_postgres_location_hides_its_password():
    scheme, rest = URL.split("://", 1)
    user, host = rest.split("@", 1)
    # The test cluster trusts loopback, so the server ignores the password given here.
    url = f"{scheme}://{user.split(':')[0]}:s3cret-pw@{host}"
    store = oncely.Store(url)
    assert "s3cret-pw" not in store.location
    assert store.location == f"{scheme}://{user.split(':')[0]}:***@{host}"
    assert "s3cret-pw" not in repr(store)
