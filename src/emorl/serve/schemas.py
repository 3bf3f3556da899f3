"""The JSON shapes of the API (pydantic models): FastAPI publishes them in ``/openapi.json``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    code: str = Field(description="stable error kind, counted in /metrics (e.g. too_large, unreadable, no_audio)")
    message: str = Field(description="what is wrong and what is expected, naming the file or field")
    status: int = Field(description="the HTTP status")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Timings(BaseModel):
    decode_ms: float = Field(description="checking and decoding the media (worker process)")
    queue_ms: float = Field(description="waiting for the model, from decoded to the start of its batch")
    inference_ms: float = Field(description="the model call of the batch this clip ran in")
    total_ms: float = Field(description="from the request's arrival to its answer")
    batch_size: int = Field(description="clips in that model call")


class Cue(BaseModel):
    start: int = Field(description="character offset in `reasoning`")
    end: int
    phrase: str = Field(description="the cue lexicon's form (emorl.eval.attribution)")
    modality: str = Field(description="video | audio")
    kind: str = Field(description="cue (evidence) | flat (unremarkable channel) | generic (the channel's name)")


class Condition(BaseModel):
    emotion: str | None
    probabilities: dict[str, float]


class Ablation(BaseModel):
    reference_class: str = Field(description="the top class given video and audio")
    conditions: dict[str, Condition] = Field(description="video+audio, video (only), audio (only)")
    contributions: dict[str, float] = Field(
        description="per modality: P(reference class | both) - P(reference class | without it), in [-1, 1]"
    )


class Prediction(BaseModel):
    id: str = Field(description="the uploaded file's name or the requested path")
    emotion: str | None = Field(description="the answer, read by the model's recipe grader; null when unparsable")
    probabilities: dict[str, float] = Field(description="every class of the model's label set; sums to 1")
    reasoning: str = Field(description="the reasoning text ('' when the completion has none)")
    format_ok: bool = Field(description="the completion follows the recipe's format")
    parse: str = Field(description="'ok' or why there is no emotion (no_answer, several_emotions, ...)")
    completion: str = Field(description="the model's whole greedy completion")
    modality: str = Field(description="the media given to the model: video+audio, video or audio")
    cues: list[Cue] = Field(description="cue phrases found in the reasoning")
    media_notes: list[str] = Field(description="substitutions and degenerate-media flags (flag:short, ...)")
    ablation: Ablation | None = Field(description="with ablation=true on a clip with video and audio")
    timings: Timings


class ItemError(BaseModel):
    id: str
    error: ErrorBody


class BatchResponse(BaseModel):
    results: list[Prediction | ItemError] = Field(description="one per file or path, in order")


class PathRequest(BaseModel):
    """A file on the server, under its --media-root."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="relative to the server's media root", min_length=1, max_length=4096)
    ablation: bool = Field(False, description="also run video only and audio only (modality contributions)")


class BatchPathRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, description="relative to the server's media root")
    ablation: bool = False


ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "malformed request"),
        (401, "missing or wrong bearer token"),
        (403, ("a path outside the media root, or paths disabled")),
        (404, "no such file under the media root"),
        (413, "upload larger than the limit"),
        (415, "unsupported file type or wrong container"),
        (422, ("unusable media (unreadable, no audio, zero frames, too long, ...) or an invalid parameter")),
        (503, "queue full (Retry-After says when to retry)"),
        (504, "no answer within the per-request timeout"),
    )
}


def upload_body(batch: bool) -> dict:
    """``openapi_extra`` for the predict routes: multipart upload or JSON paths."""
    field = "files" if batch else "file"
    item = {"type": "string", "format": "binary"}
    schema = {
        "type": "object",
        "required": [field],
        "properties": {field: {"type": "array", "items": item} if batch else item},
    }
    js = (BatchPathRequest if batch else PathRequest).model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}, "application/json": {"schema": js}},
        }
    }
