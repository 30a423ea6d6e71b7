"""`run_server`: load the model once and serve it with uvicorn until interrupted."""

from __future__ import annotations

import sys
from pathlib import Path

from roadscene.errors import InputError
from roadscene.predict.describe import describe_prompt
from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.serve.settings import ServeSettings
from roadscene.serve.tls import (
    certificate_names,
    check_pem_pair,
    default_cert_dir,
    lan_addresses,
    self_signed_certificate,
)


def tls_files(settings: ServeSettings) -> tuple[Path, Path] | None:
    """(certificate, key) to serve HTTPS with, or None for plain HTTP."""
    if not settings.https:
        return None
    if settings.cert is not None and settings.key is not None:
        check_pem_pair(settings.cert, settings.key)
        return settings.cert, settings.key
    folder = settings.cert_dir or default_cert_dir()
    return self_signed_certificate(folder, certificate_names(settings.host))


def page_urls(settings: ServeSettings, port: int) -> list[str]:
    """Where to open the page: this machine, and (when bound beyond loopback) the address a phone
    uses. A token goes in the fragment, which browsers never send; the page reads it."""
    scheme = "https" if settings.https else "http"
    fragment = f"#token={settings.token}" if settings.token else ""
    if settings.loopback:
        hosts = ["localhost" if settings.host == "127.0.0.1" else settings.host]
    elif settings.host in ("0.0.0.0", "::"):
        hosts = ["localhost", *lan_addresses()]
    else:
        hosts = [settings.host]
    return [f"{scheme}://{host}:{port}/{fragment}" for host in hosts]


def run_server(card: ModelCard, settings: ServeSettings) -> None:
    """Serve `card`'s model as configured (blocks until Ctrl-C)."""
    try:
        import uvicorn

        from roadscene.serve.app import create_app
    except ImportError as err:
        raise InputError(
            f"roadscene serve needs the serve extra ({err.name} is missing): "
            "pip install 'roadscene[serve]'"
        ) from None
    describe_prompt(card)  # a caption-only model is refused before it loads
    tls = tls_files(settings)
    predictor = Predictor.load(card, device=settings.device)
    app = create_app(settings, predictor)
    print(
        "roadscene serve: open " + "  or  ".join(page_urls(settings, settings.port)),
        file=sys.stderr,
    )
    if not settings.https and not settings.loopback:
        print(
            "roadscene serve: phones give the camera only to https pages: add --https",
            file=sys.stderr,
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        log_level="info",
        access_log=False,
    )
