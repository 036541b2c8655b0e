"""Rate limits: counted in the store, shared by every worker, 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service import close_app, create_app
from tests.conftest import LinkActions, auth


@pytest.fixture
def limited(config):
    """Two apps on one store, as two workers (or hosts) would be, with small limits."""
    limits = {
        "RATE_LIMIT_LINKS_PER_KEY": "5 per minute",
        "RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT": "3 per minute",
        "RATE_LIMIT_VERIFY_FAILURES_PER_KEY": "8 per minute",
    }
    apps = [create_app({**config, **limits}) for _ in range(2)]
    yield [LinkActions(app.test_client()) for app in apps]
    for app in apps:
        close_app(app)


def client_ip(ip: str) -> dict:
    return {"client": {"ip": ip}}


def test_failed_verifications_per_client_are_limited_across_workers(limited, frozen):
    a, b = limited
    for worker in (a, b, a):
        assert worker.verify("garbage", **client_ip("198.51.100.1")).json["code"] == "token_invalid"
    response = b.verify("garbage", **client_ip("198.51.100.1"))
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another client is not affected.
    assert a.verify("garbage", **client_ip("198.51.100.2")).status_code == 401


def test_a_good_link_still_works_for_a_limited_client(limited, frozen):
    a, _ = limited
    a.enable()
    token = a.token("42")
    for _ in range(4):
        a.verify("garbage", **client_ip("198.51.100.1"))
    assert a.verify("garbage", **client_ip("198.51.100.1")).status_code == 429
    assert a.verify(token, **client_ip("198.51.100.1")).status_code == 200


def test_the_window_ends(limited, frozen, store_url):
    a, _ = limited
    for _ in range(4):
        a.verify("garbage", **client_ip("198.51.100.1"))
    assert a.verify("garbage", **client_ip("198.51.100.1")).status_code == 429
    if store_url.startswith("redis"):
        # Redis expires the counter on its own clock, which freezegun cannot move:
        # check that the window it set is one minute at most.
        store = a.client.application.extensions["store"]
        keys = store.redis.keys(store.key_prefix + "rl:*")
        assert keys and all(0 < store.redis.pttl(k) <= 60_000 for k in keys)
        return
    frozen.tick(timedelta(seconds=61))
    assert a.verify("garbage", **client_ip("198.51.100.1")).status_code == 401


def test_failed_verifications_per_portal_key_are_limited(limited, frozen):
    a, b = limited
    for i in range(8):
        worker = (a, b)[i % 2]
        assert worker.verify("garbage", **client_ip(f"203.0.113.{i}")).status_code == 401
    assert a.verify("garbage", **client_ip("203.0.113.99")).status_code == 429
    assert a.verify("garbage").status_code == 429


def test_link_requests_per_issuer_key_are_limited(limited, frozen):
    a, b = limited
    for i in range(5):
        assert (a, b)[i % 2].issue("42").status_code == 200
    response = a.issue("42")
    assert response.status_code == 429
    assert response.json["code"] == "rate_limited"
    assert "Retry-After" in response.headers
    # Another issuer key has its own budget.
    other = a.client.post(
        "/v1/links",
        json={"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}},
        headers=auth("ops-key"),
    )
    assert other.status_code == 200


def test_batch_counts_as_one_link_request(limited, frozen):
    a, _ = limited
    item = {"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}}
    for _ in range(5):
        response = a.client.post(
            "/v1/links/batch", json={"items": [item] * 50}, headers=auth("issuer-key")
        )
        assert response.status_code == 200
    response = a.client.post("/v1/links/batch", json={"items": [item]}, headers=auth("issuer-key"))
    assert response.status_code == 429


def test_rate_limits_can_be_switched_off(config, frozen):
    app = create_app(
        {
            **config,
            "RATE_LIMITS_ENABLED": False,
            "RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT": "1 per minute",
        }
    )
    actions = LinkActions(app.test_client())
    for _ in range(5):
        assert actions.verify("garbage", **client_ip("198.51.100.1")).status_code == 401
    close_app(app)


@pytest.mark.parametrize("value", ("often", "5 per fortnight", ""))
def test_a_bad_limit_setting_stops_the_start(config, value):
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match="RATE_LIMIT_LINKS_PER_KEY"):
        create_app({**config, "RATE_LIMIT_LINKS_PER_KEY": value})
