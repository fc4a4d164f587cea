"""The command line as people use it: exit codes, one-line errors, signals, finalized outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamseg.contract import MODELS_DIR
from streamseg.media import count_frames
from tests.support.rtsp import skip_reason as rtsp_skip_reason

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "bikes.mp4"


def streamseg(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_bundled_pipelines() -> None:
    assert streamseg("validate", "pipelines/file.yaml").returncode == 0
    r = streamseg("validate", "pipelines/camera.yaml", env={"CAM_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: []\nmodel: {path: selfie_landscape}\n", "p.yaml:1: sources: List should have at least 1 item"),
        (
            "sources:\n  - {name: a, uri: x.mp4}\nmodel: {path: selfie_landscape}\nbatch:\n  max_btch: 2\n",
            "p.yaml:5: batch.max_btch: unknown key",
        ),
        (
            "sources:\n  - {name: a, uri: x.mp4}\nmodel: {path: nosuchmodel}\n",
            "model 'nosuchmodel': no such file and no bundled model of that name",
        ),
        (
            "sources:\n  - {name: a, uri: 'gopher://u:topsecret@h/x'}\nmodel: {path: selfie_landscape}\n",
            "p.yaml:2: sources.0.uri: source 'gopher://u:***@h/x': unknown scheme 'gopher'",
        ),
        ("sources:\n  - {name: a, uri: x.mp4\n", "p.yaml:3: invalid YAML"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    r = streamseg("validate", str(write(tmp_path, text)), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # no traceback
    assert expected in lines[0]
    assert "topsecret" not in r.stderr


def test_usage_error_exit_2() -> None:
    r = streamseg("run")
    assert r.returncode == 2 and r.stderr.startswith("streamseg: error: usage:")
    assert streamseg("run", "pipelines/file.yaml", "--max-frames", "0").returncode == 2


def test_models_and_doctor() -> None:
    r = streamseg("models")
    assert r.returncode == 0 and "selfie_landscape" in r.stdout and "person (255, 56, 56)" in r.stdout
    r = streamseg("doctor")
    assert r.returncode == 0
    assert "libx264 (encode)" in r.stdout and "CPUExecutionProvider" in r.stdout and "cuda driver" in r.stdout
    rtsp_line = next(line for line in r.stdout.splitlines() if line.startswith("rtsp output"))
    if rtsp_skip_reason() is None:  # the same Debian packages serve RTSP in the tests
        assert rtsp_line.split()[-1] == "available", rtsp_line


def _file_pipeline(tmp_path: Path, uri: str, extra_sources: str = "", realtime: bool = False) -> Path:
    return write(
        tmp_path,
        f"""
sources:
  - {{name: clip, uri: "{uri}", realtime: {str(realtime).lower()}}}
{extra_sources}
model: {{path: selfie_landscape}}
outputs:
  - {{type: video, path: "{tmp_path}/{{stream}}.mp4"}}
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
http: {{enabled: false}}
""",
    )


def test_run_file_with_max_frames(tmp_path: Path) -> None:
    r = streamseg("run", str(_file_pipeline(tmp_path, str(CLIP))), "--max-frames", "40")
    assert r.returncode == 0, r.stderr
    assert "processed 40 frames" in r.stdout
    assert count_frames(tmp_path / "clip.mp4") == 40
    records = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in records] == list(range(40))
    assert all(abs(sum(x["class_area_ratio"].values()) - 1) < 1e-12 for x in records)


def test_missing_file_fails_its_stream_not_the_others(tmp_path: Path) -> None:
    extra = f'  - {{name: gone, uri: "{tmp_path}/missing.mp4"}}'
    r = streamseg("run", str(_file_pipeline(tmp_path, str(CLIP), extra)), "--max-frames", "30")
    assert r.returncode == 1
    assert "clip=30" in r.stdout  # the good stream ran to the end
    errors = [x for x in r.stderr.splitlines() if x.startswith("streamseg: error:")]
    assert errors == [f"streamseg: error: stream 'gone' ({tmp_path}/missing.mp4): No such file or directory"]
    assert count_frames(tmp_path / "clip.mp4") == 30


def test_corrupt_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    r = streamseg("run", str(_file_pipeline(tmp_path, str(bad))))
    assert r.returncode == 1
    assert f"streamseg: error: stream 'clip' ({bad}): Invalid data found when processing input" in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_sidecar_is_a_one_line_error(tmp_path: Path) -> None:
    sidecar = json.loads((MODELS_DIR / "selfie_landscape/selfie_landscape.json").read_text())
    sidecar["input"]["width"] = 320
    sidecar["onnx"] = str(MODELS_DIR / "selfie_landscape/selfie_landscape.onnx")
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    cfg = write(
        tmp_path,
        f"sources:\n  - {{name: a, uri: '{CLIP}'}}\nmodel: {{path: '{tmp_path}/m.json'}}\nhttp: {{enabled: false}}\n",
    )
    r = streamseg("run", str(cfg))
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(f"streamseg: error: {tmp_path}/m.json: input: sidecar says NHWC 144x320")
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finalizes_outputs_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = _file_pipeline(tmp_path, str(CLIP), realtime=True)  # 10 s of real-time playback
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jsonl = tmp_path / "stats.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.1)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    done = len(jsonl.read_text().splitlines())
    assert 20 <= done < 250
    assert count_frames(tmp_path / "clip.mp4") == done  # the MP4 is finalized and complete
    assert f"{sig.name} received" in err


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_that_leaves_early_gets_no_traceback(unbuffered: str) -> None:
    # `streamseg models | head -3`: the pipe's reader is gone before streamseg writes (closed here
    # before it starts, so the write fails every time), with and without PYTHONUNBUFFERED.
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "streamseg", "models"],
            cwd=ROOT,
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (1, "")
