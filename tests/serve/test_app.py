"""The server's API through FastAPI's TestClient (no socket needed): answers equal `describe`'s,
sessions speak only on change, bad requests are named 4xx errors, the token guards every endpoint
but health, and the page and the OpenAPI page need nothing from the network."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_helpers import TEST_MAX_NEW_TOKENS, scene_frame, upload

from roadscene.predict.describe import describe_images
from roadscene.serve import ServeSettings
from roadscene.serve.app import WEB_FILES, create_app
from roadscene.targets import clock_directions, cue_for_parsed, parse_response, spoken_cue

TOKEN = "correct-horse-battery-staple"


def _settings(**overrides) -> ServeSettings:
    return ServeSettings(max_new_tokens=TEST_MAX_NEW_TOKENS, **overrides)


@pytest.fixture(scope="module")
def client(serve_predictor):
    # The whole module shares this client, so its requests would add up against the per-client
    # rate limit however fast the box runs them; the limit itself is tested in test_live.py.
    unlimited = _settings(rate_per_s=1000.0, rate_burst=1000)
    with TestClient(create_app(unlimited, serve_predictor)) as test_client:
        yield test_client


def _batches(client: TestClient) -> float:
    """How many model batches the server has run (from /metrics)."""
    found = re.search(r"^roadscene_batch_size_count (\S+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_describe_answers_as_describe_does(client, serve_predictor, tmp_path) -> None:
    frame = scene_frame(1, fmt="PNG")  # lossless: the server sees exactly the file's pixels
    (tmp_path / "frame.png").write_bytes(frame)
    response = client.post("/v1/describe", files=upload(frame, "frame.png", "image/png"))
    assert response.status_code == 200, response.text
    body = response.json()

    [expected] = describe_images(
        [tmp_path / "frame.png"], serve_predictor, max_new_tokens=TEST_MAX_NEW_TOKENS
    )
    assert body["answer"] == expected.answer  # the same prompt, grammar and prediction code
    assert body["answer"].startswith("Sidewalk: ")
    parsed = parse_response(body["answer"])
    cue = cue_for_parsed(parsed)
    assert body["cue"] == cue.to_dict() and body["cue"]["urgency"] in {"low", "medium", "high"}
    assert body["directions"] == clock_directions(parsed)
    assert body["fields"] == {
        "sidewalk": parsed.sidewalk,
        "road": parsed.road,
        "relation": parsed.relation,
    }
    assert body["close"] == parsed.to_dict()["near"] and body["far"] == parsed.to_dict()["far"]
    assert body["speak"] == {
        "say": True,
        "reason": "no session",
        "text": spoken_cue(cue, clock_directions(parsed), "normal"),
    }
    assert body["frame"]["usable"] and body["frame"]["problem"] is None
    latency = body["latency"]
    assert latency["batch_size"] == 1 and latency["model_ms"] > 0
    assert latency["total_ms"] >= latency["model_ms"]


def test_a_session_speaks_only_when_something_changed(client) -> None:
    frame = scene_frame(2)
    started = client.post("/v1/sessions")
    assert started.status_code == 201
    session = started.json()["session"]
    form = {"session": session, "verbosity": "brief"}

    first = client.post("/v1/describe", files=upload(frame), data=form).json()
    assert first["speak"]["say"] and first["speak"]["reason"] == "first"
    assert first["speak"]["text"] == first["cue"]["text"]  # brief: the cue alone
    again = client.post("/v1/describe", files=upload(frame), data=form).json()
    assert again["cue"] == first["cue"]
    assert (again["speak"]["say"], again["speak"]["reason"]) == (False, "unchanged")

    # a covered lens: no guess, no model call, and it is news
    batches = _batches(client)
    dark = io.BytesIO()
    Image.new("RGB", (320, 240), (6, 6, 8)).save(dark, "JPEG")
    unclear = client.post("/v1/describe", files=upload(dark.getvalue()), data=form).json()
    assert unclear["cue"]["text"] == "Camera view unclear: raise the phone."
    assert unclear["frame"]["problem"] == "dark" and unclear["answer"] is None
    assert (unclear["speak"]["say"], unclear["speak"]["reason"]) == (True, "action changed")
    assert _batches(client) == batches

    assert client.delete(f"/v1/sessions/{session}").status_code == 204
    gone = client.post("/v1/describe", files=upload(frame), data=form)
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_session"
    assert client.delete(f"/v1/sessions/{session}").status_code == 404


def test_bad_requests_are_named_and_the_server_keeps_serving(client, png_bomb) -> None:
    jpeg = scene_frame(3, size=320)
    cases = [
        # (what, request kwargs, status, error code, words in the detail)
        ("truncated JPEG", {"files": upload(jpeg[: len(jpeg) // 2])}, 400, "bad_image",
         "image file is truncated"),
        ("text file", {"files": upload(b"just text\n", "notes.txt", "text/plain")}, 415,
         "unsupported_media_type", "unsupported upload type 'text/plain'"),
        ("text called a JPEG", {"files": upload(b"just text\n")}, 400, "bad_image",
         "not a JPEG, PNG or WEBP image"),
        ("20000 x 20000 PNG", {"files": upload(png_bomb, "big.png", "image/png")}, 400,
         "bad_image", "400,000,000 pixels is over the limit of 24,000,000"),
        ("50 MB body", {"files": upload(b"\xff" * (50 * 1024 * 1024))}, 413, "too_large",
         "over the limit of 8,388,608 bytes"),
        ("50 MB sent in chunks", {"content": (b"x" * (1 << 20) for _ in range(50)),
         "headers": {"content-type": "multipart/form-data; boundary=x"}}, 413, "too_large",
         "over the limit of 8,388,608 bytes"),
        ("a raw JPEG body", {"content": jpeg, "headers": {"content-type": "image/jpeg"}}, 415,
         "unsupported_media_type", "multipart/form-data"),
        ("no image field", {"data": {"verbosity": "brief"}, "files": {"other": ("a", b"b")}},
         422, "invalid_request", "image: Field required"),
        ("a video clip", {"files": upload(b"\0\0\0\x18ftypmp42", "clip.mp4", "video/mp4")}, 415,
         "unsupported_media_type", "video clips (video/mp4) are not supported yet"),
        ("unknown verbosity", {"files": upload(jpeg), "data": {"verbosity": "loud"}}, 422,
         "invalid_request", "verbosity"),
    ]  # fmt: skip
    for what, kwargs, status, code, words in cases:
        response = client.post("/v1/describe", **kwargs)
        assert response.status_code == status, (what, response.text)
        assert response.headers["content-type"] == "application/json", what
        body = response.json()
        assert body["error"] == code and words in body["detail"], (what, body)
    good = client.post("/v1/describe", files=upload(jpeg))
    assert good.status_code == 200 and good.json()["answer"]
    metrics = client.get("/metrics").text
    assert 'roadscene_errors_total{error="too_large"} 2.0' in metrics
    assert 'roadscene_requests_total{route="/v1/describe",status="415"}' in metrics


def test_service_endpoints(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "roadscene_requests_total",
        "roadscene_errors_total",
        "roadscene_queue_depth",
        "roadscene_batch_size_bucket",
        "roadscene_describe_latency_seconds_bucket",
        "roadscene_sessions",
    ):
        assert name in metrics.text, name
    schema = client.get("/openapi.json").json()
    assert {"/v1/describe", "/v1/sessions", "/healthz", "/metrics"} <= set(schema["paths"])
    upload_schema = schema["paths"]["/v1/describe"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_schema
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs/swagger-ui-bundle.js" in docs.text
    assert not re.search(r"(src|href)=['\"]https?://", docs.text)  # no CDN
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200


def test_the_page_needs_nothing_from_the_network(client) -> None:
    for path, name in (("/", "index.html"), ("/app.js", "app.js"), ("/app.css", "app.css")):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == WEB_FILES[name]
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", response.text), name
    page = client.get("/").text
    for needed in ('id="start"', 'role="status"', "<label", 'lang="en"', "aria-pressed"):
        assert needed in page
    # only the page's own files: nothing else under / is served
    assert client.get("/index.html").status_code == 404
    assert client.get("/web/app.js").status_code == 404
    assert client.get("/../pyproject.toml").status_code == 404


def test_token_guards_every_endpoint_but_health(serve_predictor) -> None:
    app = create_app(_settings(token=TOKEN), serve_predictor)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200  # the page itself holds nothing secret
        for method, path in (
            ("post", "/v1/sessions"),
            ("get", "/metrics"),
            ("get", "/openapi.json"),
            ("delete", "/v1/sessions/x"),
        ):
            response = getattr(client, method)(path)
            assert response.status_code == 401, path
            assert response.json()["detail"].startswith("missing bearer token")
            assert response.headers["www-authenticate"] == "Bearer"
        missing = client.post("/v1/describe", files=upload(scene_frame(0)))
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        wrong = client.post(
            "/v1/sessions", headers={"Authorization": "Bearer not-the-token-at-all"}
        )
        assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["detail"]
        right = client.post("/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 201


def test_settings_refuse_unsafe_binds() -> None:
    from roadscene.errors import InputError

    with pytest.raises(InputError, match="binding 0.0.0.0 lets other machines use the model"):
        ServeSettings.from_options(host="0.0.0.0")
    with pytest.raises(InputError, match="at least 16 characters"):
        ServeSettings.from_options(host="0.0.0.0", token="short")
    with pytest.raises(InputError, match="--max-batch-size"):
        ServeSettings.from_options(max_batch_size=0)
    assert ServeSettings.from_options(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert ServeSettings.from_options(host="::1").loopback
    assert ServeSettings().host == "127.0.0.1"


def test_cors_is_off_unless_configured(client, serve_predictor) -> None:
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    app = create_app(_settings(cors_origins=("https://example.org",)), serve_predictor)
    with TestClient(app) as allowed:
        response = allowed.get("/healthz", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://example.org"
        preflight = allowed.options(
            "/v1/describe",
            headers={**origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.status_code == 200
        other = allowed.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_caption_model_is_refused_before_it_loads(tmp_path) -> None:
    from roadscene.errors import InputError
    from roadscene.predict import ModelCard
    from roadscene.serve.server import run_server

    card = ModelCard(base=str(tmp_path / "nothing"), adapter=None, family="smolvlm", task="caption")
    with pytest.raises(InputError, match="trained on 'caption'"):
        run_server(card, ServeSettings())
