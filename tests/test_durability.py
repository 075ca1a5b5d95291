"""The power-loss shim and the crash experiment, with real processes and real SIGKILLs: what the
shim keeps from the file until fsync, and what each persistence setting loses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from redai_lab.lab import durability
from redai_lab.lab.durability import (
    AOF_ALWAYS,
    AOF_EVERYSEC,
    AOF_NO,
    POWER_LOSS,
    PROCESS_CRASH,
    RDB_ONLY,
    PowerLossUnavailableError,
    Trial,
    kill,
    powerloss_env,
    run_trial,
    start_server,
    summary,
)
from redai_lab.lab.features import has_command

# A process that writes to files the way Redis does (open, write, fsync, close, rename), says
# "ready" and waits to be killed. argv: the directory; the steps are the test's.
WRITER = textwrap.dedent('''
    import os, sys, time
    os.chdir(sys.argv[1])
    exec(sys.argv[2])
    print("ready", flush=True)
    time.sleep(60)
''')


def killed_after(steps: str, directory: Path, env: dict[str, str] | None) -> str:
    """Run ``steps`` in a Python process (under ``env``), SIGKILL it once they are done; its output."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), textwrap.dedent(steps)],
                               env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while (line := process.stdout.readline()) and line != "ready\n":
            lines.append(line)
        assert line == "ready\n", "the writer died before it was ready"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    return "".join(lines)


APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the power-loss shim needs Linux")


@linux_only
def test_the_shim_keeps_unsynced_writes_from_the_file_and_the_kill_drops_them(tmp_path: Path) -> None:
    steps = f'''
        fd = os.open("aof", {APPEND}, 0o644)
        os.write(fd, b"synced\\n")
        os.fsync(fd)
        os.write(fd, b"never synced\\n")
        print(os.lseek(fd, 0, os.SEEK_END))   # the process sees its own writes
        print(open("aof", "rb").read())        # the disk does not
    '''
    out = killed_after(steps, tmp_path, powerloss_env(str(tmp_path)))
    assert out == "20\nb'synced\\n'\n"
    assert (tmp_path / "aof").read_bytes() == b"synced\n"


def test_without_the_shim_the_same_kill_keeps_every_write(tmp_path: Path) -> None:
    steps = f'''
        fd = os.open("aof", {APPEND}, 0o644)
        os.write(fd, b"synced\\n")
        os.fsync(fd)
        os.write(fd, b"never synced\\n")
    '''
    killed_after(steps, tmp_path, None)
    assert (tmp_path / "aof").read_bytes() == b"synced\nnever synced\n"  # the page cache survived


@linux_only
def test_fdatasync_after_close_and_rename_flushes_what_the_inode_kept(tmp_path: Path) -> None:
    # The page cache belongs to the file, not to a descriptor: Redis writes the manifest to a
    # temporary name, fdatasyncs it and renames it; a kept write survives close and rename.
    steps = f'''
        fd = os.open("temp-manifest", {os.O_WRONLY | os.O_CREAT | os.O_TRUNC}, 0o644)
        os.write(fd, b"file base\\n")
        os.close(fd)
        os.rename("temp-manifest", "manifest")
        fd = os.open("manifest", {APPEND})
        os.write(fd, b"file incr\\n")
        os.fdatasync(fd)
        os.write(fd, b"lost\\n")
    '''
    killed_after(steps, tmp_path, powerloss_env(str(tmp_path)))
    assert (tmp_path / "manifest").read_bytes() == b"file base\nfile incr\n"


@linux_only
def test_truncation_and_unlink_drop_kept_writes(tmp_path: Path) -> None:
    steps = f'''
        fd = os.open("truncated", {os.O_RDWR | os.O_CREAT}, 0o644)
        os.write(fd, b"0123456789")
        os.ftruncate(fd, 4)
        os.fsync(fd)
        fd = os.open("removed", {APPEND}, 0o644)
        os.write(fd, b"old file's kept bytes")
        os.unlink("removed")
        fd = os.open("removed", {APPEND}, 0o644)   # a new file, maybe on the same inode number
        os.write(fd, b"new")
        os.fsync(fd)
    '''
    killed_after(steps, tmp_path, powerloss_env(str(tmp_path)))
    assert (tmp_path / "truncated").read_bytes() == b"0123"
    assert (tmp_path / "removed").read_bytes() == b"new"


@linux_only
def test_files_outside_the_watched_directory_are_written_through(tmp_path: Path) -> None:
    watched, other = tmp_path / "data", tmp_path / "logs"
    watched.mkdir()
    other.mkdir()
    steps = f'''
        for name in ("data/f", "logs/f"):
            os.write(os.open(name, {APPEND}, 0o644), b"unsynced")
    '''
    killed_after(steps, tmp_path, powerloss_env(str(watched)))
    assert (watched / "f").read_bytes() == b""
    assert (other / "f").read_bytes() == b"unsynced"


@linux_only
@pytest.mark.parametrize(("cc", "says"), [(None, "No C compiler (cc) here"),
                                          ("no-such-cc", "CC=no-such-cc is not a program on PATH")])
def test_no_compiler_is_one_line_that_says_what_to_install(tmp_path: Path, monkeypatch, cc, says) -> None:
    monkeypatch.setenv(durability.CACHE_ENV, str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("PATH", str(tmp_path))
    if cc is None:
        monkeypatch.delenv("CC", raising=False)
    else:
        monkeypatch.setenv("CC", cc)
    with pytest.raises(PowerLossUnavailableError) as caught:
        durability.powerloss_shim()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(says) and "apt install gcc" in message
    assert list(tmp_path.iterdir()) == []


def test_off_linux_power_loss_is_one_line_and_nothing_is_built(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(durability.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(PowerLossUnavailableError, match=r"^Simulating a power loss needs Linux .*, not darwin: "):
        durability.powerloss_shim()
    assert list(tmp_path.iterdir()) == []


@linux_only
def test_the_shim_is_built_once_per_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(durability.CACHE_ENV, str(tmp_path))
    first = durability.powerloss_shim()
    assert first.parent == tmp_path and first.name.startswith("powerloss-") and first.suffix == ".so"
    built_at = first.stat().st_mtime_ns
    assert durability.powerloss_shim() == first and first.stat().st_mtime_ns == built_at
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left


# Redis under real kills.

@linux_only
def test_appendfsync_always_loses_no_acknowledged_write_even_in_a_power_loss() -> None:
    trial = run_trial(AOF_ALWAYS, POWER_LOSS, seconds=0.5)
    assert trial.acknowledged > 0
    # The write in flight at the kill may have been fsynced without being acknowledged.
    assert trial.recovered in (trial.acknowledged, trial.acknowledged + 1)
    assert trial.lost == 0


@linux_only
def test_appendfsync_no_loses_every_write_in_a_power_loss() -> None:
    # Redis never fsyncs the AOF under "no": the shim proves a power cut takes all of it.
    trial = run_trial(AOF_NO, POWER_LOSS, seconds=0.5)
    assert trial.acknowledged > 0
    assert trial.recovered == 0 and trial.lost == trial.acknowledged


@pytest.mark.parametrize("setting", [AOF_NO, AOF_EVERYSEC, AOF_ALWAYS], ids=lambda s: s.name)
def test_a_process_crash_loses_nothing_under_any_aof_setting(setting) -> None:
    # 0.4 s: before everysec's first fsync, so it holds nothing back (it does while a slow fsync
    # runs, for up to 2 s: then even a process crash loses that backlog).
    trial = run_trial(setting, PROCESS_CRASH, seconds=0.4)
    assert trial.acknowledged > 0
    assert trial.recovered in (trial.acknowledged, trial.acknowledged + 1)


def test_rdb_only_loses_everything_since_the_last_save() -> None:
    trial = run_trial(RDB_ONLY, PROCESS_CRASH, seconds=0.4)  # no save point fires in 0.4 s
    assert trial.acknowledged > 0
    assert trial.recovered == 0 and trial.lost == trial.acknowledged


def test_an_unknown_kind_of_crash_is_refused() -> None:
    with pytest.raises(ValueError, match="crash must be one of process crash, power loss"):
        run_trial(AOF_ALWAYS, "meteor", seconds=0.1)


def test_summary_groups_kills_by_setting_and_crash_in_order() -> None:
    trials = [
        Trial("AOF", POWER_LOSS, acknowledged=100, recovered=90, seconds=1.0),
        Trial("RDB", POWER_LOSS, acknowledged=50, recovered=0, seconds=0.5),
        Trial("AOF", POWER_LOSS, acknowledged=300, recovered=301, seconds=1.0),
    ]
    assert summary(trials) == [
        {"setting": "AOF", "crash": POWER_LOSS, "lost at each kill": [10, 0], "acknowledged": 400,
         "lost": 10, "writes/s (median)": 200.0},
        {"setting": "RDB", "crash": POWER_LOSS, "lost at each kill": [50], "acknowledged": 50,
         "lost": 50, "writes/s (median)": 100.0},
    ]


def _server(config, tmp_path: Path, crash: str = PROCESS_CRASH):
    server = start_server(config, str(tmp_path), crash=crash)
    return server, redis.Redis.from_url(server.url, decode_responses=True)


def _incr(client: redis.Redis, key: str, times: int) -> int:
    with client.pipeline(transaction=False) as pipe:
        for _ in range(times):
            pipe.incr(key)
        return pipe.execute()[-1]


def test_rdb_only_keeps_the_last_save_and_loses_what_came_after(tmp_path: Path) -> None:
    server, client = _server(RDB_ONLY.config, tmp_path)
    _incr(client, "counter", 100)
    client.save()
    assert _incr(client, "counter", 50) == 150
    kill(server)
    restarted, client = _server(RDB_ONLY.config, tmp_path)
    with restarted:
        assert client.get("counter") == "100"
        client.close()


@linux_only
def test_everysec_keeps_what_its_periodic_fsync_covered_in_a_power_loss() -> None:
    trial = run_trial(AOF_EVERYSEC, POWER_LOSS)  # 1.5 s: longer than the fsync period
    assert trial.acknowledged > 0
    assert 0 < trial.recovered <= trial.acknowledged + 1


@linux_only
def test_waitaof_confirms_a_write_that_then_survives_a_power_loss(tmp_path: Path) -> None:
    server, client = _server(AOF_EVERYSEC.config, tmp_path, crash=POWER_LOSS)
    if not has_command(client, "WAITAOF"):
        server.stop()
        pytest.skip(f"{server.product} has no WAITAOF (Redis 7.2+)")
    _incr(client, "orders", 500)
    confirmed = client.incr("orders")
    assert client.execute_command("WAITAOF", 1, 0, 0) == [1, 0]
    assert _incr(client, "orders", 300) == confirmed + 300
    product = server.product
    kill(server)
    restarted, client = _server(AOF_EVERYSEC.config, tmp_path)
    with restarted:
        recovered = int(client.get("orders") or 0)
        client.close()
    if product.startswith("Valkey"):
        # Valkey 9.1.2 answers WAITAOF before its fsync (Redis fixed it: redis/redis#13793), as
        # lesson 23 says: when this fails, Valkey has fixed it and the lesson must say so.
        assert recovered < confirmed
    else:
        assert confirmed <= recovered < confirmed + 300
