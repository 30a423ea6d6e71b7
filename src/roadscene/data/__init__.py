"""Data: building the SENSATION exports (`build`), data rows as records (`records`), their images
(`images`; uploaded bytes too), whether a camera frame is usable (`quality`), the examples model
families consume (`examples`) and synthetic scenes (`synth`).
Layer 3: imports `schema` and `targets` below it, never a model family."""
