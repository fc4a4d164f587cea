"""streamseg/uri.py: one grammar for source URIs, and what of a URI people may see."""

from __future__ import annotations

import pytest

from streamseg.errors import ConfigError
from streamseg.uri import SCHEMES, help_text, parse_source_uri, password_of, redact, scrub


@pytest.mark.parametrize(
    ("uri", "kind", "target"),
    [
        ("rtsp://user:pw@10.0.0.5:554/stream1", "rtsp", "rtsp://user:pw@10.0.0.5:554/stream1"),
        ("RTSP://cam.local/s", "rtsp", "RTSP://cam.local/s"),
        ("rtsps://camera.local/stream", "rtsp", "rtsps://camera.local/stream"),
        ("file:///videos/clip.mp4", "file", "/videos/clip.mp4"),
        ("samples/clip.mp4", "file", "samples/clip.mp4"),
        ("/abs/clip.mkv", "file", "/abs/clip.mkv"),
        ("C:\\videos\\clip.mp4", "file", "C:\\videos\\clip.mp4"),
        ("v4l2:///dev/video0", "camera", "/dev/video0"),
        ("/dev/video2", "camera", "/dev/video2"),
        ("0", "camera", "0"),
        ("  3 ", "camera", "3"),
        ("synthetic://", "synthetic", ""),
    ],
)
def test_every_scheme_parses_to_its_kind(uri: str, kind: str, target: str) -> None:
    parsed = parse_source_uri(uri)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_every_scheme_in_the_table_is_covered_and_in_the_help() -> None:
    kinds = {parse_source_uri(f"{scheme}://host/x").kind for scheme in SCHEMES}
    assert kinds == {"rtsp", "file", "camera", "synthetic"}
    text = help_text()
    assert [line.split()[0] for line in text.splitlines()] == [f"{s}://" for s in SCHEMES]


def test_synthetic_params() -> None:
    parsed = parse_source_uri("synthetic://?width=32&height=16&frames=5")
    assert parsed.param("width") == "32"
    assert parsed.param("frames") == "5"
    assert parsed.param("fps", "25") == "25"


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("http://bob:hunter2@cam/x", "source 'http://bob:***@cam/x': unknown scheme 'http'"),
        ("ftp://host/clip.mp4", "source 'ftp://host/clip.mp4': unknown scheme 'ftp'"),
        ("   ", "empty source URI"),
    ],
)
def test_bad_uri_is_a_config_error_naming_the_redacted_uri(uri: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_source_uri(uri)
    assert error in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1?x=1", "rtsp://admin:***@10.0.0.5:554/stream1?x=1"),
        ("rtsp://admin:hunter2@cam.local/s", "rtsp://admin:***@cam.local/s"),
        ("rtsp://:hunter2@cam/s", "rtsp://:***@cam/s"),
        ("rtsp://admin:p@ss:w0rd@cam:8554/s", "rtsp://admin:***@cam:8554/s"),
        ("rtsp://admin:hunter2@[::1]:8554/s", "rtsp://admin:***@[::1]:8554/s"),
        # a bad port must not make redaction itself fail (it runs inside error handling)
        ("rtsp://admin:hunter2@cam:notaport/s", "rtsp://admin:***@cam:notaport/s"),
        ("rtsp://admin:hunter2@cam:99999/s", "rtsp://admin:***@cam:99999/s"),
        ("rtsp://admin@cam/s", "rtsp://admin@cam/s"),
        ("samples/clip.mp4", "samples/clip.mp4"),
    ],
)
def test_redact_hides_the_password_and_keeps_the_rest(uri: str, shown: str) -> None:
    assert redact(uri) == shown
    for secret in ("hunter2", "p@ss", "w0rd"):
        assert secret not in redact(uri)


def test_redact_unparseable() -> None:
    assert redact("rtsp://[::1/x") == "<unparseable URI>"


def test_password_of() -> None:
    assert password_of("rtsp://u:hunter2@cam/s") == "hunter2"
    assert password_of("rtsp://u@cam/s") is None
    assert password_of("rtsp://[::1/x") is None


@pytest.mark.parametrize(
    ("text", "secrets", "clean"),
    [
        ("open rtsp://u:hunter2@cam failed: hunter2", ["hunter2"], "open rtsp://u:***@cam failed: ***"),
        ("nothing secret", ["hunter2"], "nothing secret"),
        ("empty secrets are ignored", [""], "empty secrets are ignored"),
        ("a b", ["a", "b"], "*** ***"),
    ],
)
def test_scrub(text: str, secrets: list[str], clean: str) -> None:
    assert scrub(text, secrets) == clean
