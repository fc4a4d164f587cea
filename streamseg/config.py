"""Pipeline configuration: YAML with ${ENV} interpolation, validated by pydantic (unknown keys
rejected). Errors read ``file:line: key.path: message`` so people can jump to the line.

Relative paths (model, files, outputs) are taken from the current directory, as ffmpeg and
gst-launch do; bundled model names (``streamseg models``) need no path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from .backends import DEFAULT_ORDER as DEFAULT_BACKEND_ORDER
from .backends import REGISTRY as BACKENDS
from .errors import ConfigError
from .events.config import EventsConfig
from .outputs.base import OutputConfig
from .outputs.registry import OUTPUT_KINDS, kind_of
from .schema import HOUR as _HOUR
from .schema import MAX_FPS as _MAX_FPS
from .schema import Strict as _Strict
from .uri import parse_source_uri, redact
from .zones import HomographyConfig, ZoneConfig, check_zones


class Timeouts(_Strict):
    open_s: float = Field(10.0, gt=0, le=_HOUR, description="give up opening a stream after this long")
    read_s: float = Field(5.0, gt=0, le=_HOUR, description="a blocked read fails after this long")
    watchdog_s: float = Field(
        5.0, gt=0, le=_HOUR, description="no new frame for this long marks the stream down and reconnects"
    )


class Reconnect(_Strict):
    initial_s: float = Field(0.5, gt=0, le=_HOUR, description="first back-off delay")
    # At most 5 s: a camera is then back within 10 s of its return (one wait, one open, one
    # keyframe), however long it was away; one probe per 5 s is no load on a dead host.
    max_s: float = Field(
        5.0, gt=0, le=5, description="back-off cap (at most 5 s: a returning camera is seen within 10 s)"
    )
    factor: float = Field(2.0, ge=1, le=100, description="back-off growth per failed attempt")
    max_attempts: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="reconnect attempts after consecutive failures before giving the stream up; 0 = give up "
        "at the first failure; null = never give up",
    )

    @model_validator(mode="after")
    def _initial_within_cap(self) -> Reconnect:
        if self.initial_s > self.max_s:
            raise ValueError(f"initial_s ({self.initial_s:g}) must not exceed max_s ({self.max_s:g})")
        return self


class SourceConfig(_Strict):
    name: str = Field(
        description="stream name used in metrics, records and file names",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    uri: str = Field(description="rtsp://, file:// or a path, /dev/videoN or an index, synthetic://")
    fps: float | None = Field(None, gt=0, le=_MAX_FPS, description="cap on frames taken per second")
    loop: bool = Field(False, description="files: start again at the end")
    realtime: bool = Field(False, description="files: pace frames at their timestamps")
    queue_size: int = Field(4, ge=1, le=256, description="frames buffered between reader and batcher")
    decoder: Literal["auto", "ffmpeg", "gstreamer", "nvdec"] = Field(
        "auto",
        description="rtsp/files: auto = NVDEC when the processing stage runs on an NVIDIA GPU that has it "
        "(PyNvVideoCodec), GStreamer's hardware decoder on Jetson, FFmpeg elsewhere; nvdec = NVIDIA's hardware "
        "decoder or a config error (pip install 'streamseg[nvdec]')",
    )
    decode_threads: int = Field(
        1,
        ge=0,
        le=64,
        description="FFmpeg decoder threads for files and RTSP: 1 (streams already decode in parallel, one "
        "thread each; measured: the least CPU per frame at 640x272 to 1080p); 0 = FFmpeg's choice (frame and "
        "slice threads: for one large stream, e.g. 4K HEVC, that one core cannot decode in real time)",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts, description="network and watchdog timeouts")
    reconnect: Reconnect = Field(default_factory=Reconnect, description="live-source reconnection")
    # homography before zones: the zones validator reads it (pydantic validates in declaration order).
    homography: HomographyConfig | None = Field(
        None, description="4 image points <-> 4 ground points in metres, for square metres of ground zones"
    )
    zones: list[ZoneConfig] = Field(
        default_factory=list, max_length=64, description="named polygons measured per class (see README: Zones)"
    )

    @field_validator("decoder")
    @classmethod
    def _decoder_here(cls, v: str, info: ValidationInfo) -> str:
        # nvdec is refused where it cannot run, so validate, run and the API say so before any stream opens.
        if v == "nvdec" and "uri" in info.data:
            from .readers.nvdec import nvdec_problem

            problem = nvdec_problem(parse_source_uri(info.data["uri"]).kind)
            if problem is not None:
                raise ValueError(f"stream '{info.data.get('name', '?')}': {problem}")
        return v

    @field_validator("zones")
    @classmethod
    def _zones_consistent(cls, v: list[ZoneConfig], info: ValidationInfo) -> list[ZoneConfig]:
        check_zones(v, info.data.get("homography"))
        return v

    @field_validator("name")
    @classmethod
    def _not_a_folder_name(cls, v: str) -> str:
        # Stream names go into file paths ({stream}): '.' and '..' would write outside the folder.
        if v in (".", ".."):
            raise ValueError(f"'{v}' cannot name a stream (it names a folder in output paths)")
        return v

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        try:
            parse_source_uri(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    @property
    def kind(self) -> str:
        return parse_source_uri(self.uri).kind

    @property
    def live(self) -> bool:
        """Live sources drop their oldest frames when the pipeline lags; files never drop."""
        return self.kind in ("rtsp", "camera") or (self.kind == "synthetic" and self.realtime)

    @property
    def display_uri(self) -> str:
        return redact(self.uri)


# `model.backend`, `model.prefer` and a section per backend with settings (model.tensorrt, ...):
# built from the backend table, each section's model declared beside its backend.
if TYPE_CHECKING:
    BackendName = str
    BackendChoice = str
else:
    BackendName = Literal[tuple(n for n, c in BACKENDS.items() if not c.remote)]
    BackendChoice = Literal[("auto", *BACKENDS)]


class _ModelBase(_Strict):
    path: str = Field(description="bundled model name or path to a sidecar (.json/.yaml) or .onnx")
    backend: BackendChoice = Field(
        "auto",
        description="engine to run the model; auto takes the first available of `prefer`; triton (a remote "
        "server) is only used when named here",
    )
    prefer: list[BackendName] = Field(
        default_factory=lambda: list(DEFAULT_BACKEND_ORDER),
        min_length=1,
        description="order tried by backend: auto",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to run inference")
    threads: int = Field(0, ge=0, le=1024, description="CPU inference threads; 0 = library default")

    def options(self, backend: str) -> BaseModel | None:
        """The backend's own section (``model.tensorrt`` for tensorrt, ...); None for one without settings."""
        cls = BACKENDS.get(backend)
        return getattr(self, backend) if cls is not None and cls.options_model is not None else None


if TYPE_CHECKING:
    ModelConfig = _ModelBase
else:
    ModelConfig = create_model(
        "ModelConfig",
        __base__=_ModelBase,
        __module__=__name__,
        **{
            name: (cls.options_model, Field(default_factory=cls.options_model, description=cls.options_description))
            for name, cls in BACKENDS.items()
            if cls.options_model is not None
        },
    )


class BatchConfig(_Strict):
    max_batch: int = Field(4, ge=1, le=64, description="frames per engine call, across streams")
    max_wait_ms: float = Field(10.0, ge=0, le=60_000, description="longest a frame waits for its batch to fill")


class TemporalConfig(_Strict):
    mode: Literal["none", "majority", "ema"] = Field(
        "none",
        description="majority: per-pixel vote over the last k class maps (any model); "
        "ema: exponential average of probabilities (logits/probabilities models only)",
    )
    k: int = Field(3, ge=2, le=15, description="majority: class maps voted over, the current one included")
    alpha: float = Field(0.5, gt=0, le=1, description="ema: weight of the newest frame's probabilities")
    reset_gap_s: float = Field(
        2.0, gt=0, description="a stream whose frames stop this long (a reconnect) starts without its past"
    )


class RleConfig(_Strict):
    classes: list[str] = Field(min_length=1, description="classes whose masks go out as COCO RLE, by name")
    every: int = Field(1, ge=1, description="on frames whose index is a multiple of this")


class PostprocessConfig(_Strict):
    smoothing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="exponential smoothing of the class-area metric: weight of the previous value",
    )
    temporal: TemporalConfig = Field(
        default_factory=TemporalConfig, description="temporal smoothing of the class maps against flicker"
    )
    rle: RleConfig | None = Field(
        None, description="per-class masks as COCO RLE in JSONL records (model resolution); null: none"
    )


class OverlayConfig(_Strict):
    mode: Literal["blend", "mask", "side-by-side"] = Field("blend", description="how to draw")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the class color in blend mode")
    legend: bool = Field(True, description="draw class, color and area % in a corner")
    zones: bool = Field(True, description="outline each stream's zones with their names")
    transparent: list[str] | None = Field(
        None,
        description="classes left unpainted in blend mode; null = classes named 'background'",
    )


# The `outputs:` items: one model per kind in the output registry, chosen by `type`.
if TYPE_CHECKING:
    Output = OutputConfig
else:
    Output = Annotated[Union[tuple(k.config for k in OUTPUT_KINDS.values())], Field(discriminator="type")]  # noqa: UP007


class HttpConfig(_Strict):
    enabled: bool = Field(True, description="serve /metrics, /healthz and the live view")
    host: str = Field("127.0.0.1", description="bind address; loopback unless you mean it")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")


class PipelineConfig(_Strict):
    name: str = Field("streamseg", description="pipeline name shown in logs and the live view")
    sources: list[SourceConfig] = Field(min_length=1, description="streams to read")
    model: ModelConfig = Field(description="segmentation model and backend")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="cross-stream batching")
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig, description="stats")
    overlay: OverlayConfig = Field(default_factory=OverlayConfig, description="overlay drawing")
    outputs: list[Output] = Field(default_factory=list, description="where results go")
    http: HttpConfig = Field(default_factory=HttpConfig, description="metrics and live view server")
    events: EventsConfig | None = Field(None, description="event rules and where their events go")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        # A field validator, not a model one, so the error points at `sources`, not at line 1.
        seen: dict[str, int] = {}
        for i, s in enumerate(sources):
            if s.name in seen:
                raise ValueError(f"duplicate stream name '{s.name}' (sources {seen[s.name]} and {i})")
            seen[s.name] = i
        return sources

    # Cross-checks are field validators that read the fields validated before them (pydantic
    # validates in declaration order), so an error points at the key's line, not at line 1.
    @field_validator("outputs")
    @classmethod
    def _known_streams(cls, outputs: list[Output], info: ValidationInfo) -> list[Output]:
        names = {s.name for s in info.data.get("sources", [])}
        for i, o in enumerate(outputs):
            only = o.selected_streams()
            if only and names:
                unknown = sorted(set(only) - names)
                if unknown:
                    raise ValueError(f"output {i} ({o.type}) names unknown streams: {', '.join(unknown)}")
            # Streams sharing one video path would overwrite each other's file, and with retention
            # one stream's pruning would delete the file another is still writing.
            if kind_of(o).per_stream and "{stream}" not in getattr(o, "path", "{stream}"):
                reach = only or sorted(names)
                if len(reach) > 1:
                    raise ValueError(
                        f"output {i} ({o.type}): path needs {{stream}} when {len(reach)} streams write to it"
                    )
        return outputs

    @field_validator("http")
    @classmethod
    def _live_needs_http(cls, http: HttpConfig, info: ValidationInfo) -> HttpConfig:
        for o in info.data.get("outputs", []):
            if kind_of(o).needs_http and not http.enabled:
                raise ValueError(f"a {o.type} output needs http.enabled: true")
        return http

    @field_validator("events")
    @classmethod
    def _rules_name_streams(cls, events: EventsConfig | None, info: ValidationInfo) -> EventsConfig | None:
        zones = {s.name: {z.name for z in s.zones} for s in info.data.get("sources", [])}
        for i, r in enumerate(events.rules if events else []):
            if zones and r.stream not in zones:
                raise ValueError(f"rules.{i}.stream: no stream named '{r.stream}' ({', '.join(sorted(zones))})")
            if zones and r.zone is not None and r.zone not in zones[r.stream]:
                have = ", ".join(sorted(zones[r.stream])) or "none"
                raise ValueError(f"rules.{i}.zone: stream '{r.stream}' has no zone '{r.zone}' (its zones: {have})")
        return events


# --- loading -------------------------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Path_ = tuple[str | int, ...]


def _interpolate(text: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
        return value

    return _ENV.sub(sub, text)


# A pipeline file is a few KB nested five deep. These bounds turn a hostile or broken file (a
# 20,000-deep nesting, a 300-byte "billion laughs" alias bomb, /dev/zero) into one line, exit 2,
# instead of a RecursionError or a validation that never ends.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000  # counted after alias expansion


class _Limited(yaml.YAMLError):
    """A YAML document over one of the bounds, with the line it was found on."""

    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer (which recurses per level) refuses nesting beyond MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _Limited(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def compose_bounded(text: str) -> yaml.Node | None:
    """Compose YAML text under the size and depth bounds; raises yaml.YAMLError (``_Limited`` too)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _Limited(f"larger than {MAX_CONFIG_BYTES} bytes", 1)
    loader = BoundedLoader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()


def plain_data(node: yaml.Node) -> Any:
    """A composed node as Python data, aliases expanded within MAX_DEPTH and MAX_NODES (for sidecars)."""
    return _to_python(node, (), {}, "", [0], interpolate=False)


def _to_python(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str, budget: list[int], interpolate: bool = True
) -> Any:
    # Aliases make a DAG (or a cycle) of the node tree; walking it expands them, so the walk itself
    # is bounded: a cycle trips the depth bound, a bomb the node count.
    budget[0] += 1
    if budget[0] > MAX_NODES:
        raise _Limited(f"more than {MAX_NODES} values once aliases are expanded", node.start_mark.line + 1)
    if len(path) > MAX_DEPTH:
        raise _Limited(f"nested deeper than {MAX_DEPTH} levels (through aliases)", node.start_mark.line + 1)
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{file}:{key_node.start_mark.line + 1}: {'.'.join(map(str, (*path, key)))}"
            if key in out:
                raise ConfigError(f"{where}: duplicate key")
            out[key] = _to_python(value_node, (*path, key), lines, file, budget, interpolate)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines, file, budget, interpolate) for i, v in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)  # the composer makes no other kind
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except ValueError as e:  # e.g. `!!int abc`; the tag errors are yaml.YAMLError
        raise _Limited(f"cannot read value '{node.value}': {e}", node.start_mark.line + 1) from None
    if isinstance(value, str) and "\x00" in value:  # no path, URI or name can hold one
        raise _Limited("a NUL character in a value", node.start_mark.line + 1)
    if interpolate and isinstance(value, str) and "${" in value:
        where = f"{file}:{node.start_mark.line + 1}: {'.'.join(map(str, path))}"
        value = _interpolate(value, where)
    return value


def key_line(file: str | Path, loc: Path_) -> int:
    """The line of ``loc`` (e.g. ``("sources", 0, "uri")``) in a pipeline file that loaded, for
    checks that run after validation (``streamseg validate``); 1 when it cannot be told."""
    try:
        with open(file, "rb") as f:
            root = compose_bounded(f.read(MAX_CONFIG_BYTES + 1).decode("utf-8"))
        lines: dict[Path_, int] = {}
        if root is not None:
            _to_python(root, (), lines, str(file), [0], interpolate=False)
        return _line_for(loc, lines)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ConfigError):
        return 1


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline file; every problem is a ConfigError of one line."""
    file = str(path)
    try:
        # Read at most one byte past the bound: a huge file (or /dev/zero) is refused, not slurped.
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{file}:1: invalid YAML: larger than {MAX_CONFIG_BYTES} bytes")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: cannot read: {e}") from None
    return parse_config(text, file)


def parse_config(text: str, file: str = "<config>") -> PipelineConfig:
    lines: dict[Path_, int] = {}
    try:
        root = compose_bounded(text)
        if root is None:
            raise ConfigError(f"{file}:1: the file is empty")
        data = _to_python(root, (), lines, file, [0])
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}:{yaml_error_line(e)}: invalid YAML: {yaml_error_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: expected a mapping of settings at the top level")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        clean, msg = describe_validation(e)
        key = ".".join(str(p) for p in clean) or "(top level)"
        raise ConfigError(f"{file}:{_line_for(clean, lines)}: {key}: {msg}") from None


def describe_validation(e: ValidationError) -> tuple[Path_, str]:
    """The first error's key path and a one-line message (passwords masked, "and N more")."""
    err = e.errors()[0]
    loc = tuple(err["loc"])
    # pydantic puts the discriminator value in the location of union members; drop it.
    clean = tuple(p for i, p in enumerate(loc) if not (p in _OUTPUT_TAGS and i > 0 and isinstance(loc[i - 1], int)))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if err["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return clean, f"{redact_msg(msg)}{more}"


def yaml_error_line(e: yaml.YAMLError) -> int:
    if isinstance(e, _Limited):
        return e.line
    mark = getattr(e, "problem_mark", None)
    return mark.line + 1 if mark is not None else 1


def yaml_error_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e)
    return str(problem).splitlines()[0] if str(problem).strip() else type(e).__name__


_OUTPUT_TAGS = set(OUTPUT_KINDS)


def redact_msg(msg: str) -> str:
    # pydantic echoes input values into some messages; a URL there may carry a password.
    msg = msg.removeprefix("Value error, ")
    return re.sub(r"([a-z][a-z0-9+.-]*://)([^\s'\"@/:]*):(?!\*\*\*@)[^\s'\"@/]*@", r"\1\2:***@", msg)
