"""Request and response models of the HTTP service (they are its OpenAPI document)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fewshot.gallery.names import MAX_NAME_LENGTH

MAX_IMAGES = 100


class ImagesIn(BaseModel):
    """Images as data URLs (``data:image/png;base64,...``), as the page sends its drawings."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES)


class RecogniseIn(ImagesIn):
    top: int = Field(1, ge=1, le=50, description="how many nearest classes to list")
    drawings: bool = Field(False, description="also answer a stored drawing of each best class")


class ErrorOut(BaseModel):
    error: str


class MatchOut(BaseModel):
    name: str
    distance: float


class RecognitionOut(BaseModel):
    source: str
    name: str | None = Field(description="the class, or null: not seen before")
    known: bool
    distance: float = Field(description="of the best class (minus the method's score)")
    threshold: float | None = Field(description="beyond it a query is unknown; null when uncalibrated")
    calibrated: bool
    margin: float | None = Field(description="distance of the second class minus that of the best")
    top: list[MatchOut]
    notes: list[str]
    drawing: str | None = Field(None, description="a stored drawing of the best class, as a PNG data URL, when "
                                                  "asked for with drawings")


class RecogniseOut(BaseModel):
    results: list[RecognitionOut]


class DuplicateOut(BaseModel):
    source: str
    example_id: int = Field(description="the stored copy's id; -1 when repeated within this request")
    class_: str = Field(alias="class")


class AddOut(BaseModel):
    name: str = Field(max_length=MAX_NAME_LENGTH)
    created: bool
    example_ids: list[int]
    duplicates: list[DuplicateOut]
    notes: dict[str, list[str]]


class ClassOut(BaseModel):
    name: str
    examples: int
    added: float = Field(description="Unix time")
    thumbnail: str | None = Field(description="its first drawing, as a PNG data URL")


class ClassesOut(BaseModel):
    total: int
    offset: int
    limit: int
    classes: list[ClassOut]


class ExampleOut(BaseModel):
    id: int
    added: float
    source: str
    thumbnail: str


class ClassDetail(BaseModel):
    name: str
    examples: list[ExampleOut]


class RemovedOut(BaseModel):
    name: str
    examples_removed: int
    class_removed: bool


class HealthOut(BaseModel):
    status: str
    model: str
    fingerprint: str
    match: str
    classes: int
    examples: int
    index: str
    calibrated: bool
    threshold: float | None
    notes: list[str]
