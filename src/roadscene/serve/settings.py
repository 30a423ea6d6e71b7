"""What `roadscene serve` does, as one typed object: where it listens, how it batches, decodes,
limits and protects, and how live sessions speak (`ServeSettings`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roadscene.data.quality import FrameThresholds
from roadscene.errors import option_error
from roadscene.predict.settings import Decoding
from roadscene.targets import GrammarOptions

TOKEN_ENV = "ROADSCENE_TOKEN"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeSettings(BaseModel):
    """Everything the server needs besides the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1", description="Address to bind; anything but loopback needs a token."
    )
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    token: str | None = Field(
        None, description=f"Bearer token every endpoint but /healthz requires (or ${TOKEN_ENV})."
    )
    cors_origins: tuple[str, ...] = Field((), description="Origins allowed by CORS (none: off).")
    # model and decoding
    structured: bool = Field(True, description="Constrain answers to the answer grammar.")
    relation_from_fields: bool = Field(False, description="Only the relation the fields derive.")
    num_beams: int = Field(1, ge=1, le=8, description="1 = greedy, K = beam search.")
    max_new_tokens: int = Field(192, ge=16, le=1024, description="Answer length cap in tokens.")
    # micro-batching
    max_batch_size: int = Field(8, ge=1, le=64, description="Frames per model batch at most.")
    max_wait_ms: float = Field(
        10.0, ge=0, le=1000, description="How long a batch waits for more frames once one arrived."
    )
    max_queue: int = Field(64, ge=1, description="Frames waiting for the model before 503 busy.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="Longest a request may take (reading the upload, waiting, model)."
    )
    # limits on uploads and clients
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Request body cap.")
    max_pixels: int = Field(
        24_000_000, ge=64 * 64, description="Image size cap, checked before decoding."
    )
    rate_per_s: float = Field(
        8.0, ge=0, description="Requests per second per client address (0: no limit)."
    )
    rate_burst: int = Field(16, ge=1, description="Requests a client may send at once.")
    max_connections: int = Field(256, ge=1, description="Open connections before 503.")
    # frames and live sessions
    frame_check: bool = Field(True, description="Answer 'view unclear' for unusable frames.")
    frame_thresholds: FrameThresholds = Field(default_factory=FrameThresholds)
    reminder_s: float = Field(
        15.0, ge=0, description="Repeat an unchanged cue after this many seconds (0: never)."
    )
    session_ttl_s: float = Field(900.0, gt=0, description="A session idle this long ends.")
    max_sessions: int = Field(1000, ge=1, description="Live sessions kept at most.")
    # TLS
    https: bool = Field(False, description="Serve HTTPS (self-signed unless cert/key are given).")
    cert: Path | None = Field(None, description="PEM certificate (with key).")
    key: Path | None = Field(None, description="PEM private key (with cert).")
    cert_dir: Path | None = Field(None, description="Where a self-signed certificate is kept.")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 (default: auto).")

    @model_validator(mode="after")
    def _safe(self) -> ServeSettings:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token must have at least {MIN_TOKEN_CHARS} characters")
        if not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"binding {self.host} lets other machines use the model: pass --token TOKEN or "
                f"set {TOKEN_ENV} (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        if self.relation_from_fields and not self.structured:
            raise ValueError("--relation-from-fields needs --structured")
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key go together")
        if self.cert is not None and not self.https:
            raise ValueError("--cert/--key need --https")
        return self

    @classmethod
    def from_options(cls, **options: object) -> ServeSettings:
        """Settings from command-line style options; a bad value is an InputError naming the
        option (`--max-batch-size`, ...)."""
        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as err:
            raise option_error(err, whole=None) from None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def decoding(self) -> Decoding:
        grammar = (
            GrammarOptions(relation_from_fields=self.relation_from_fields)
            if self.structured
            else None
        )
        return Decoding(
            num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, grammar=grammar
        )
