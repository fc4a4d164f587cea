"""streamseg/shard.py: a stable split (a fixed table, the same in every process), balance, the few
streams rendezvous hashing moves when N grows, and one-line usage errors for bad specs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streamseg.errors import ConfigError
from streamseg.shard import ALL, ENV_VAR, Shard, parse_shard, resolve_shard, shard_of

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"cam-{i:02d}" for i in range(1, 13)]
# The split of the 12-stream test pipeline. Any change to the hash changes it and fails here: a
# changed hash would silently move cameras between replicas of a running deployment.
EXPECTED_3 = {
    "cam-01": 1, "cam-02": 0, "cam-03": 1, "cam-04": 2, "cam-05": 0, "cam-06": 0,
    "cam-07": 1, "cam-08": 2, "cam-09": 0, "cam-10": 1, "cam-11": 0, "cam-12": 2,
}  # fmt: skip
EXPECTED_OTHER = {("entrance", 3): 2, ("yard", 3): 0, ("Kamera-Süd", 3): 0, ("cam-12", 4): 3, ("cam-01", 4): 1}


def test_fixed_assignment_table() -> None:
    assert {n: shard_of(n, 3) for n in NAMES} == EXPECTED_3
    assert {key: shard_of(*key) for key in EXPECTED_OTHER} == EXPECTED_OTHER
    assert all(shard_of(n, 1) == 0 for n in NAMES)


@pytest.mark.parametrize("seed", ["0", "1", "12345"])
def test_same_split_in_other_processes_whatever_the_hash_seed(seed: str) -> None:
    # Python's hash() of a str changes with PYTHONHASHSEED; the shard must not.
    code = "from streamseg.shard import shard_of; import sys; print([shard_of(n, 3) for n in sys.argv[1:]])"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    r = subprocess.run(
        [sys.executable, "-c", code, *NAMES], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([EXPECTED_3[n] for n in NAMES])


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_balance_over_1000_names(count: int) -> None:
    sizes = Counter(shard_of(f"camera-{i}", count) for i in range(1000))
    assert sorted(sizes) == list(range(count))
    expected = 1000 / count
    assert all(abs(n - expected) <= 0.15 * expected for n in sizes.values()), sizes


def test_growing_from_3_to_4_moves_only_streams_to_the_new_shard() -> None:
    names = [f"camera-{i}" for i in range(1000)]
    before = {n: shard_of(n, 3) for n in names}
    after = {n: shard_of(n, 4) for n in names}
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == 3 for n in moved)  # nothing moves between the old replicas
    assert 0.20 <= len(moved) / len(names) <= 0.30  # about 1/4; a modulo would move about 3/4


def test_every_stream_in_exactly_one_shard() -> None:
    for count in (1, 2, 3, 5):
        picked = [n for i in range(count) for n in Shard(i, count).select(NAMES)]
        assert sorted(picked) == sorted(NAMES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), (" 1/2 ", Shard(1, 2)), ("0/1", ALL), ("07/10", Shard(7, 10))],
)
def test_parse_good(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("3/3", "I must be 0..N-1"),
        ("5/3", "I must be 0..N-1"),
        ("0/0", "N must be 1..10000"),
        ("0/10001", "N must be 1..10000"),
        ("-1/3", "must look like I/N"),
        ("1", "must look like I/N"),
        ("a/b", "must look like I/N"),
        ("1/3/4", "must look like I/N"),
        ("1.0/3", "must look like I/N"),
        ("", "must look like I/N"),
        ("/3", "must look like I/N"),
    ],
)
def test_parse_bad(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error) as e:
        parse_shard(text, "--shard")
    assert str(e.value).startswith("usage: --shard") and "\n" not in str(e.value)


def test_resolve_flag_then_env_then_all() -> None:
    assert resolve_shard("1/3", {ENV_VAR: "0/2"}) == Shard(1, 3)
    assert resolve_shard(None, {ENV_VAR: "0/2"}) == Shard(0, 2)
    assert resolve_shard(None, {ENV_VAR: ""}) == ALL
    assert resolve_shard(None, {}) == ALL
    with pytest.raises(ConfigError, match=f"usage: {ENV_VAR} must look like I/N .*got '/3'"):
        resolve_shard(None, {ENV_VAR: "/3"})  # what $(POD_INDEX)/3 gives when the label is missing


def streamseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def twelve_streams(tmp_path: Path) -> Path:
    sources = "".join(f'  - {{name: {n}, uri: "synthetic://?width=64&height=48&frames=2"}}\n' for n in NAMES)
    path = tmp_path / "p.yaml"
    path.write_text(f"sources:\n{sources}model: {{path: selfie_landscape}}\n")
    return path


def test_validate_lists_the_shards_streams(tmp_path: Path) -> None:
    path = twelve_streams(tmp_path)
    r = streamseg("validate", str(path), "--shard", "1/3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "shard 1/3: 4 of 12 stream(s): cam-01, cam-03, cam-07, cam-10"
    r = streamseg("validate", str(path), env={ENV_VAR: "2/3"})
    assert r.stdout.splitlines()[-1] == "shard 2/3: 3 of 12 stream(s): cam-04, cam-08, cam-12"
    r = streamseg("validate", str(path))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1  # no shard, no list


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--shard", "3/3"], {}, "streamseg: error: usage: --shard: I must be 0..N-1, got '3/3'"),
        (["--shard", "0/0"], {}, "streamseg: error: usage: --shard: N must be 1..10000, got '0/0'"),
        (["--shard", "x"], {}, "streamseg: error: usage: --shard must look like I/N (e.g. 0/3), got 'x'"),
        ([], {ENV_VAR: "1-3"}, f"streamseg: error: usage: {ENV_VAR} must look like I/N (e.g. 0/3), got '1-3'"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_shard_is_a_usage_error(
    tmp_path: Path, command: str, args: list[str], env: dict[str, str], error: str
) -> None:
    r = streamseg(command, str(twelve_streams(tmp_path)), *args, env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == error
