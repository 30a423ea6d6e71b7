"""`roadscene serve --model RUN`: the live assistant (API, metrics, the phone page)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    model: str = typer.Option(
        ..., "--model", help="Hub id, saved model folder, or a training output (adapter) folder."
    ),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter folder."),
    family: str | None = typer.Option(
        None, "--family", help="Model family (default: from the saved config / model type)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; beyond loopback a token is required."
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="ROADSCENE_TOKEN",
        show_envvar=True,
        help="Bearer token for every endpoint but /healthz (16+ characters).",
    ),
    https: bool = typer.Option(
        False, "--https", help="Serve HTTPS (phones give the camera only to secure pages)."
    ),
    cert: Path | None = typer.Option(
        None, "--cert", help="PEM certificate (default: self-signed)."
    ),
    key: Path | None = typer.Option(None, "--key", help="PEM private key for --cert."),
    cert_dir: Path | None = typer.Option(
        None,
        "--cert-dir",
        help="Where the self-signed certificate is kept (~/.config/roadscene/tls).",
    ),
    cors_origin: list[str] | None = typer.Option(
        None, "--cors-origin", help="Allow this origin by CORS (repeatable; default: CORS off)."
    ),
    max_batch_size: int = typer.Option(8, "--max-batch-size", help="Frames per model batch."),
    max_wait_ms: float = typer.Option(
        10.0, "--max-wait-ms", help="How long a batch waits for more frames."
    ),
    max_queue: int = typer.Option(64, "--max-queue", help="Waiting frames before 503 busy."),
    request_timeout_s: float = typer.Option(
        30.0, "--request-timeout-s", help="Longest a request may take."
    ),
    max_upload_bytes: int = typer.Option(
        8 * 1024 * 1024, "--max-upload-bytes", help="Request body cap in bytes."
    ),
    max_pixels: int = typer.Option(24_000_000, "--max-pixels", help="Image size cap in pixels."),
    rate_per_s: float = typer.Option(
        8.0, "--rate-per-s", help="Requests a second per client address (0: no limit)."
    ),
    rate_burst: int = typer.Option(16, "--rate-burst", help="Requests a client may send at once."),
    reminder_s: float = typer.Option(
        15.0, "--reminder-s", help="Repeat an unchanged cue after this long (0: never)."
    ),
    frame_check: bool = typer.Option(
        True, "--frame-check/--no-frame-check", help="'Camera view unclear' for unusable frames."
    ),
    structured: bool = typer.Option(
        True, "--structured/--no-structured", help="Constrain answers to the answer grammar."
    ),
    relation_from_fields: bool = typer.Option(
        False, "--relation-from-fields", help="Allow only the relation the fields' rule derives."
    ),
    num_beams: int = typer.Option(1, "--num-beams", help="1 = greedy, K = beam search."),
    max_new_tokens: int = typer.Option(192, "--max-new-tokens", help="Answer length cap."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: torch's own choice)."
    ),
) -> None:
    """Serve a model live: POST /v1/describe, the phone page at /, /metrics and /docs."""
    from roadscene.predict import ModelCard
    from roadscene.serve import ServeSettings
    from roadscene.serve.server import run_server

    settings = ServeSettings.from_options(
        host=host,
        port=port,
        token=token,
        https=https,
        cert=cert,
        key=key,
        cert_dir=cert_dir,
        cors_origins=tuple(cors_origin or ()),
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        request_timeout_s=request_timeout_s,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        rate_per_s=rate_per_s,
        rate_burst=rate_burst,
        reminder_s=reminder_s,
        frame_check=frame_check,
        structured=structured,
        relation_from_fields=relation_from_fields,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        device=device,
    )
    if threads is not None:
        if threads < 1:
            from roadscene.errors import InputError

            raise InputError(f"--threads: must be at least 1 (got {threads})")
        import torch

        torch.set_num_threads(threads)
    run_server(ModelCard.read(model, adapter, family), settings)
