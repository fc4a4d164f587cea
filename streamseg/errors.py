"""The one exception root of streamseg and its tree.

::

    StreamsegError                  anything the CLI reports as a one-line error
    ├── ConfigError                 bad YAML, unknown key, wrong value (exit code 2)
    ├── ModelError                  sidecar/graph mismatch, unreadable model (exit code 2)
    ├── BackendError                no usable backend, inference failure
    │   └── TransientBackendError   a batch failed but the backend can recover (a remote server
    │                               went away): the pipeline drops the batch and goes on
    ├── SourceError                 a stream cannot be opened or read
    ├── OutputError                 an output cannot be written
    ├── StreamChangeError           a stream cannot be added, removed or changed at runtime
    │                               (``status``: the HTTP status the API answers with)
    └── MissingDependencyError      an optional extra is not installed

Any other exception escaping the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class StreamsegError(Exception):
    """Root of every error streamseg raises on purpose."""

    exit_code = 1


class ConfigError(StreamsegError):
    """The pipeline configuration or command line is invalid."""

    exit_code = 2


class ModelError(StreamsegError):
    """The model file or its sidecar is unusable or inconsistent (a configuration problem)."""

    exit_code = 2


class BackendError(StreamsegError):
    """No backend could run the model, or inference failed."""


class TransientBackendError(BackendError):
    """One batch could not be inferred, but the backend retries on its own (with back-off): the
    pipeline counts the batch's frames as dropped (reason ``inference_error``) and keeps running.
    ``repeat`` marks a batch failed without a new attempt during an outage already reported, which
    the pipeline logs at debug level only (one line per attempt, not one per batch)."""

    def __init__(self, message: str, repeat: bool = False) -> None:
        super().__init__(message)
        self.repeat = repeat


class SourceError(StreamsegError):
    """A source could not be opened or read."""


class OutputError(StreamsegError):
    """An output could not be opened or written."""


class StreamChangeError(StreamsegError):
    """A runtime change (add, remove, change a stream) refused; the running pipeline is untouched.

    ``status`` is what the API answers: 404 no such stream, 409 a name taken or a stream this
    replica's shard does not own, 422 an invalid source config (``key``: the path of the bad key),
    503 the pipeline is not running.
    """

    def __init__(self, message: str, status: int, key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.key = key


class MissingDependencyError(StreamsegError):
    """A dependency is missing; the message says what to install: the extra, ``install`` (a system
    package), or streamseg itself again when ``extra`` is None (a base dependency went missing)."""

    def __init__(
        self, module: str, extra: str | None, purpose: str, install: str | None = None, detail: str = ""
    ) -> None:
        how = install or (f"pip install 'streamseg[{extra}]'" if extra else "pip install --force-reinstall streamseg")
        super().__init__(f"{purpose} needs the Python module '{module}'{detail}: {how}")
        self.module = module
        self.extra = extra
