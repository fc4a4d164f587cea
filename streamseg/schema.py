"""The base of every pipeline-file model, shared by ``config`` and the parts that declare their own
models beside their code (outputs, backends): unknown keys refused, values frozen and finite."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

HOUR = 3600.0
MAX_FPS = 1000.0


class Strict(BaseModel):
    # Every number the schema takes is finite and bounded to what the code can use: an infinite
    # wait or a billion-frame batch validates nowhere, instead of failing mid-run (issue 9).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
