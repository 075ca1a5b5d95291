"""redact: the one helper of redai_lab.errors that no pattern test reaches (mutation runs use this file)."""

from __future__ import annotations

import pytest

from redai_lab.errors import redact


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://alice:s3cret@host/0", "redis://alice:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://alice@host/0", "redis://alice@host/0"),  # a user name alone is no secret
        ("redis://host:6379/0?password=s3cret", "redis://host:6379/0?password=***"),
        ("redis://host/0?db=2&password=s3cret&protocol=3", "redis://host/0?db=2&password=***&protocol=3"),
        ("rediss://host/0?ssl_password=s3cret", "rediss://host/0?ssl_password=***"),
        ("redis://host/0?pass%77ord=s3cret", "redis://host/0?pass%77ord=***"),  # redis-py decodes the name
        ("redis://al:s3cret@host/0?password=s3cret2", "redis://al:***@host/0?password=***"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://:s3cret@host:port/0", "redis://:***@host:port/0"),  # not a valid URL: still no crash
        ("redis://:s3/cr?et#x@host/0", "redis://***@host/0"),  # unescaped /?# in the password
        ("alice:s3cret@host:6379", "alice:***@host:6379"),  # no scheme at all
    ],
)
def test_redact_hides_every_password(url, shown) -> None:
    assert redact(url) == shown
    assert "s3" not in redact(url)
