"""Triton Inference Server backend: CPU edge boxes decode, a shared GPU server infers.

The only module that imports tritonclient. Batches are sent as they are (one request per batch);
the server's dynamic batcher merges requests from many pipelines (deploy/triton/). At start the
server must be live and the model ready, and the model's metadata (input/output names, datatypes,
dims) and max_batch_size are checked against the sidecar, so a mismatch fails before any stream
opens: an unreachable server is a runtime error (exit 1), a missing or different model a model
error (exit 2). Start-up fails fast rather than waiting: a wrong URL or a server that is down is
told to the operator at once, while a supervisor (systemd, Kubernetes) restarts the process.

Mid-run, a failed batch raises ``TransientBackendError``: the pipeline counts its frames as dropped
and goes on. The backend then waits ``backoff_initial_s``, doubling to ``backoff_max_s``, before it
contacts the server again; batches in between fail at once without touching the network (no
hammering a server that is restarting). Each new attempt opens a fresh connection: gRPC's own
channel back-off (up to two minutes) would otherwise delay noticing a server that is back.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .._deps import require
from ..contract import TensorInfo
from ..errors import BackendError, MissingDependencyError, ModelError, TransientBackendError
from ..schema import HOUR, Strict
from .base import Backend, RuntimeInfo

log = logging.getLogger(__name__)

# Triton's datatype names -> numpy's, as contract.check_io compares them.
_TRITON_TYPES = {
    "FP32": "float32",
    "FP16": "float16",
    "UINT8": "uint8",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


class TritonConfig(Strict):
    """A Triton Inference Server that runs the model (``backend: triton``); never tried by ``auto``:
    a remote server is an operator's explicit choice."""

    url: str = Field(
        "127.0.0.1:8001",
        min_length=1,
        pattern=r"^[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}$",
        description="host:port of the server (gRPC: 8001 by default, HTTP: 8000); no scheme, no credentials",
    )
    protocol: Literal["grpc", "http"] = Field("grpc", description="Triton's gRPC or HTTP/REST API")
    model_name: str | None = Field(
        None, min_length=1, description="model name in the server's repository; default: the sidecar's name"
    )
    model_version: int | None = Field(None, ge=1, description="model version; null = the server's version policy")
    connect_timeout_s: float = Field(
        5.0, gt=0, le=300, description="start-up and reconnect probes (live, ready, metadata) give up after this long"
    )
    infer_timeout_s: float = Field(
        10.0, gt=0, le=HOUR, description="one batch's round trip fails after this long (its frames are dropped)"
    )
    backoff_initial_s: float = Field(
        0.5, gt=0, le=60, description="after a failed batch, wait this long before trying the server again"
    )
    backoff_max_s: float = Field(
        5.0, gt=0, le=60, description="back-off cap: a returning server is used again within this long"
    )

    @model_validator(mode="after")
    def _initial_within_cap(self) -> TritonConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_initial_s ({self.backoff_initial_s:g}) must not exceed backoff_max_s ({self.backoff_max_s:g})"
            )
        return self


def _client_module(protocol: str) -> Any:
    return require(f"tritonclient.{protocol}", "triton", "the triton backend")


def _first_line(e: BaseException) -> str:
    """A client error on one line: tritonclient's messages carry gRPC debug strings and newlines."""
    method = getattr(e, "message", None)  # tritonclient's InferenceServerException.message()
    msg = method() if callable(method) else str(e)
    text = (msg or type(e).__name__).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]


class TritonBackend(Backend):
    name = "triton"
    options_model: ClassVar[type[Strict] | None] = TritonConfig
    options_description: ClassVar[str] = "Triton server settings (backend: triton)"
    remote = True

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        # The device is the server's; the client only needs tritonclient. Both protocols are in
        # the extra, so either import says whether it is installed.
        try:
            _client_module("grpc")
        except MissingDependencyError as e:
            return str(e)
        return None

    @property
    def _cfg(self) -> TritonConfig:
        return self.options if isinstance(self.options, TritonConfig) else TritonConfig()

    @property
    def _where(self) -> str:
        return f"triton server at {self._cfg.url} ({self._cfg.protocol})"

    # --- connection -----------------------------------------------------------------------------
    def _connect(self) -> None:
        """A fresh client (and connection) to the server."""
        cfg = self._cfg
        mod = _client_module(cfg.protocol)
        self._close_client()
        if cfg.protocol == "grpc":
            self._client = mod.InferenceServerClient(cfg.url)
        else:
            self._client = mod.InferenceServerClient(
                cfg.url, connection_timeout=cfg.connect_timeout_s, network_timeout=cfg.infer_timeout_s
            )
        self._mod = mod

    def _close_client(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            try:
                client.close()
            except Exception as e:  # a half-dead connection may fail to close; it is dropped anyway
                log.debug("triton client close: %s", e)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call with the connect timeout (gRPC takes it per call; HTTP at construction)."""
        if self._cfg.protocol == "grpc":
            kwargs["client_timeout"] = self._cfg.connect_timeout_s
        return getattr(self._client, method)(*args, **kwargs)

    def _probe(self) -> None:
        """Server live and ready, and the model ready; BackendError naming the URL otherwise."""
        try:
            live = self._call("is_server_live") and self._call("is_server_ready")
        except Exception as e:  # tritonclient's InferenceServerException, or a socket error over HTTP
            raise BackendError(f"{self._where} is not reachable: {_first_line(e)}") from None
        if not live:
            raise BackendError(f"{self._where} is up but not ready")

    # --- the Backend interface -------------------------------------------------------------------
    def _load(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        cfg, c = self._cfg, self.contract
        self._model_name = cfg.model_name or c.name
        self._version = "" if cfg.model_version is None else str(cfg.model_version)
        shown = self._model_name + (f" version {self._version}" if self._version else "")
        self._connect()
        self._probe()
        as_json = {"as_json": True} if cfg.protocol == "grpc" else {}
        try:
            meta = self._call("get_model_metadata", self._model_name, self._version, **as_json)
            config = self._call("get_model_config", self._model_name, self._version, **as_json)
        except Exception as e:
            raise ModelError(
                f"model.triton.model_name: {self._where} has no model '{shown}': {_first_line(e)}"
            ) from None
        try:
            ready = self._call("is_model_ready", self._model_name, self._version)
        except Exception as e:
            raise BackendError(f"{self._where}: model '{shown}' readiness unknown: {_first_line(e)}") from None
        if not ready:
            raise BackendError(f"{self._where}: model '{shown}' is not ready")
        config = config.get("config", config)  # gRPC's JSON wraps the config; HTTP's is bare
        max_batch = int(config.get("max_batch_size", 0))
        if max_batch < 1:
            raise ModelError(
                f"model.triton: model '{shown}' on {cfg.url} has max_batch_size 0 (no batching); "
                f"streamseg sends batches of up to {self.max_batch}: set max_batch_size >= {self.max_batch}"
            )
        if max_batch < self.max_batch:
            raise ModelError(
                f"batch.max_batch: {self.max_batch} exceeds max_batch_size {max_batch} of model '{shown}' on {cfg.url}"
            )

        def info(tensors: list[dict[str, Any]]) -> list[TensorInfo]:
            return [
                TensorInfo(
                    t["name"],
                    tuple(None if int(d) < 0 else int(d) for d in t["shape"]),
                    _TRITON_TYPES.get(t["datatype"], t["datatype"]),
                )
                for t in tensors
            ]

        self._in_name, self._out_name = c.input.name, c.output.name
        self._delay = cfg.backoff_initial_s
        self._retry_at = 0.0  # monotonic time before which batches fail without a request
        self._down_since: float | None = None
        self._failed_batches = 0
        log.info("%s: model '%s' ready (max_batch_size %d)", self._where, shown, max_batch)
        return info(meta.get("inputs", [])), info(meta.get("outputs", []))

    @property
    def description(self) -> str:
        return f"triton ({self._cfg.protocol} {self._cfg.url}, model {getattr(self, '_model_name', '?')})"

    @property
    def runtime(self) -> RuntimeInfo:
        # The server decides where the model runs (its instance_group); this process only sends.
        return RuntimeInfo("remote", f"triton-{self._cfg.protocol}", "fp32")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            raise TransientBackendError(
                f"{self._where} is down: batch of {batch.shape[0]} dropped (next attempt in {self._delay:g} s or less)",
                repeat=True,
            )
        try:
            if self._down_since is not None:
                self._connect()  # a fresh channel: gRPC's own reconnect back-off can reach minutes
            out = self._request(np.ascontiguousarray(batch))
        except Exception as e:  # the server died, restarted, timed out or refused the request
            self._failed(now, e, batch.shape[0])
        if self._down_since is not None:
            log.warning(
                "%s is back after %.1f s (%d attempt(s) failed meanwhile)",
                self._where,
                now - self._down_since,
                self._failed_batches,
            )
            self._down_since, self._delay, self._failed_batches = None, self._cfg.backoff_initial_s, 0
        return out

    def _request(self, batch: np.ndarray) -> np.ndarray:
        mod, cfg = self._mod, self._cfg
        inp = mod.InferInput(self._in_name, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        outputs = [mod.InferRequestedOutput(self._out_name)]
        if cfg.protocol == "grpc":
            result = self._client.infer(
                self._model_name, [inp], self._version, outputs, client_timeout=cfg.infer_timeout_s
            )
        else:
            result = self._client.infer(self._model_name, [inp], self._version, outputs)
        out = result.as_numpy(self._out_name)
        if out is None:
            raise BackendError(f"the response has no output '{self._out_name}'")
        return np.asarray(out)

    def _failed(self, now: float, e: Exception, n: int) -> None:
        """Schedule the next attempt with back-off and raise the batch's one-line error."""
        if self._down_since is None:
            self._down_since = now
        else:
            self._delay = min(self._delay * 2, self._cfg.backoff_max_s)
        self._retry_at = now + self._delay
        self._failed_batches += 1
        raise TransientBackendError(
            f"{self._where}: batch of {n} failed: {_first_line(e)} (next attempt in {self._delay:g} s)"
        ) from None

    def _close(self) -> None:
        self._close_client()
