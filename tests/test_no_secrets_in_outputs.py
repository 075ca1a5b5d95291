"""No committed notebook output shows a secret: every URL the lab prints is redacted, and no
password appears in a command, an ACL rule or a configuration value.

Every output of every notebook is scanned (streams, results, errors), whatever the lesson; the
patterns are checked on made-up outputs first, so a pattern that stops matching fails here too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from redai_lab.errors import redact

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# What redai_lab.errors.redact puts in a password's place, kombu's mask, and the placeholders of
# the URL syntax lessons explain (redis://[[user]:password@]host, redis://:PASSWORD@...).
NOT_SECRETS = {"***", "**", "password", "PASSWORD", ""}

# Each pattern's group "secret" is a password unless it is one of NOT_SECRETS.
SECRET_PATTERNS = {
    # scheme://user:PASSWORD@host, scheme://:PASSWORD@host
    "a URL with a password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@:'\"]*:(?P<secret>[^\s@'\"]+)@"),
    # ?password=..., &ssl_password=...
    "a password in a URL's query": re.compile(r"[?&][a-z_]*password=(?P<secret>[^&\s'\"#]+)", re.IGNORECASE),
    # redis> AUTH [user] PASSWORD, HELLO 3 AUTH user PASSWORD (<pass> and the like are help texts)
    "an AUTH command with its password": re.compile(
        r"(?m)(?:^|redis> |\bHELLO\s+\d\s+)AUTH\s+(?P<secret>[^\s<'\"]+)"),
    # ACL SETUSER name >PASSWORD, or an ACL file's user line with >PASSWORD
    "a plain-text password in an ACL rule": re.compile(
        r"(?im)(?:\bSETUSER\b|^user\b)[^\n]*?\s>(?P<secret>[^\s'\"]+)"),
    # requirepass / masterauth with a value: a config file's line, CONFIG GET's reply in Python, in redis-cli
    "a password setting in a config file": re.compile(r"(?im)^\s*(?:requirepass|masterauth)\s+(?P<secret>\S+)"),
    "a password setting in a reply": re.compile(
        r"(?i)['\"](?:requirepass|masterauth)['\"]\s*[:,]\s*['\"](?P<secret>[^'\"]*)['\"]"),
    "a password setting in redis-cli's reply": re.compile(
        r"(?i)\"(?:requirepass|masterauth)\"\s*\n\s*\d+\)\s*\"(?P<secret>[^\"]*)\""),
    "a password in redis-cli's environment": re.compile(r"\bREDISCLI_AUTH=(?P<secret>\S+)"),
}


def secrets_in(text: str) -> list[str]:
    """What in ``text`` shows a password, one line each (empty when nothing does)."""
    found = []
    for what, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            if match.group("secret").strip("'\"") not in NOT_SECRETS:
                found.append(f"{what}: {match.group(0)!r}")
    return found


def output_texts(notebook: Path) -> list[tuple[int, str]]:
    """Every output of every cell of ``notebook`` as text, with the cell's index."""
    texts = []
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        for output in cell.get("outputs", []):
            parts = [output.get("text", ""), output.get("ename", ""), output.get("evalue", ""),
                     output.get("traceback", [])]
            parts += [value for mime, value in output.get("data", {}).items() if mime.startswith("text/")]
            texts.append((index, "\n".join("".join(part) if isinstance(part, list) else part for part in parts)))
    return texts


LEAKS = [
    "export REDIS_URL=redis://:s3cret@127.0.0.1:6379/0",
    "Cannot reach Redis at rediss://cache:pa55word@10.0.0.5:6380/0 (timeout)",
    "unix:///run/redis.sock?db=2&password=hunter2",
    "rediss://127.0.0.1:6380/0?ssl_keyfile=k.pem&ssl_password=topsecret",
    "redis> AUTH cache correct-horse",
    "redis> HELLO 3 AUTH cache correct-horse",
    "redis> ACL SETUSER cache on >correct-horse ~cache:* +get",
    "user cache on >correct-horse ~cache:* +get",
    "{'requirepass': 'hunter2'}",
    "['masterauth', 'hunter2']",
    "requirepass hunter2",
    'redis> CONFIG GET requirepass\n1) "requirepass"\n2) "hunter2"',
    "REDISCLI_AUTH=hunter2 redis-cli PING",
]

SAFE = [
    "export REDIS_URL=redis://:***@127.0.0.1:6379/0",
    "rediss://cache:***@10.0.0.5:6380/0?ssl_ca_certs=%2Ftmp%2Fca.crt&ssl_cert_reqs=required",
    "unix:///run/redis.sock?db=2&password=***",
    "redis://cache@127.0.0.1:6379/0",
    "redis://127.0.0.1:6379/0",
    "user cache on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~cache:* +get",
    "otherwise the HELLO <proto> AUTH <user> <pass> option can be used",
    "NOAUTH Authentication required.",
    "{'requirepass': ''}",
    'redis> CONFIG GET requirepass\n1) "requirepass"\n2) ""',
    "CONFIG GET requirepass       -> NOPERM User cache has no permissions to run the 'config|get' command",
    "the AUTH command's password travels in clear text without TLS",
    "redis://[[user]:password@]host[:port][/db], or redis://:PASSWORD@host:port/db",
    "amqp://guest:**@localhost:5672//",
]


@pytest.mark.parametrize("text", LEAKS)
def test_the_scan_finds_each_kind_of_leak(text: str) -> None:
    assert secrets_in(text), f"not caught: {text}"


@pytest.mark.parametrize("text", SAFE)
def test_the_scan_lets_redacted_and_hashed_text_through(text: str) -> None:
    assert secrets_in(text) == []


@pytest.mark.parametrize("url", [leak for leak in LEAKS if "://" in leak])
def test_redact_hides_what_the_scan_looks_for(url: str) -> None:
    assert secrets_in(redact(url)) == []


def test_an_error_about_a_url_redacts_it() -> None:
    from redai_lab.patterns.queues import make_celery

    with pytest.raises(ValueError) as error:
        make_celery("amqp://guest:hunter2@rabbit:5672//")
    assert "hunter2" not in str(error.value) and "amqp://guest:***@rabbit" in str(error.value)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda path: path.stem)
def test_no_notebook_output_shows_a_password(notebook: Path) -> None:
    leaks = [f"cell {index}: {leak}" for index, text in output_texts(notebook) for leak in secrets_in(text)]
    assert leaks == [], f"{notebook.name} shows secrets in its outputs:\n" + "\n".join(leaks)
