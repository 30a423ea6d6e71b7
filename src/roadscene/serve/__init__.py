"""`roadscene serve`: a live assistant on top of the prediction code. A FastAPI app answers
frames through `Predictor.generate_batch` in micro-batches (`batcher`), keeps a session per walker
that decides when a cue is worth saying (`sessions`), refuses what it must before reading a body
(`guard`), and serves the phone page (`web/`). Layer: an application beside bench and demo.

The web framework is imported by `app` and `server` only, so the settings and sessions can be used
without the serve extra installed."""

from roadscene.serve.settings import TOKEN_ENV, ServeSettings

__all__ = ["TOKEN_ENV", "ServeSettings"]
