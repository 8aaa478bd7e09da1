"""The REST API's request bodies, as pydantic models: validated by the API (web/api.py) and
published in its OpenAPI document (web/openapi.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool | None


class RunRequest(BaseModel):
    """Start a report run."""

    model_config = ConfigDict(extra="forbid")
    template: str = Field(min_length=1, description="a template the dossier's manifest lists")
    parameters: dict[str, Scalar] = Field(
        default_factory=dict, description="parameter name -> value; missing ones take defaults"
    )


class ReleaseRequest(BaseModel):
    """Release a run (a lead who did not start it)."""

    model_config = ConfigDict(extra="forbid")
    justification: str | None = Field(
        default=None, description="required when an output check failed; recorded"
    )
    include: dict[str, str] = Field(
        default_factory=dict,
        description="unchecked outputs to show viewers (ids as in the run's `unchecked`), "
        "each with its justification; recorded. Every other unchecked output stays withheld.",
    )
