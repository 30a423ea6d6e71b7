// The walking assistant page: camera frames to the server, cues spoken back.
// Plain browser APIs only (getUserMedia, canvas, fetch, speechSynthesis, vibrate); no libraries.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"), answer: $("answer"), urgency: $("urgency"), directions: $("directions"),
    problem: $("problem"), video: $("camera"), canvas: $("frame"), form: $("settings-form"),
    interval: $("interval"), rate: $("rate"), rateValue: $("rate-value"),
    verbosity: $("verbosity"), vibrate: $("vibrate"), token: $("token"),
  };
  const STORE = "roadscene-settings";
  const MAX_SIDE = 640; // frames are sent at most this wide or high
  const DEFAULTS = { interval: 1.5, rate: 1, verbosity: "normal", voice: "page", vibrate: true, token: "" };

  class ApiProblem extends Error {
    constructor(status, code, detail, retryAfter) {
      super(detail);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  // --- settings -------------------------------------------------------------------------------
  const settings = loadSettings();

  function loadSettings() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (err) { saved = {}; }
    const loaded = { ...DEFAULTS, ...saved };
    // a token handed over in the address (#token=...) is kept, then taken out of the address bar
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      loaded.token = decodeURIComponent(match[1]);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return loaded;
  }

  function saveSettings() {
    try { localStorage.setItem(STORE, JSON.stringify(settings)); } catch (err) { /* private mode */ }
  }

  function showSettings() {
    ui.interval.value = settings.interval;
    ui.rate.value = settings.rate;
    ui.rateValue.textContent = Number(settings.rate).toFixed(1);
    ui.verbosity.value = settings.verbosity;
    ui.form.elements.voice.value = settings.voice;
    ui.vibrate.checked = settings.vibrate;
    ui.token.value = settings.token;
    applyVoiceMode();
  }

  function readSettings() {
    const interval = parseFloat(ui.interval.value);
    settings.interval = Number.isFinite(interval) ? Math.min(10, Math.max(0.5, interval)) : DEFAULTS.interval;
    const rate = parseFloat(ui.rate.value);
    settings.rate = Number.isFinite(rate) ? rate : DEFAULTS.rate;
    settings.verbosity = ui.verbosity.value;
    settings.voice = ui.form.elements.voice.value || "page";
    settings.vibrate = ui.vibrate.checked;
    settings.token = ui.token.value.trim();
    ui.rateValue.textContent = settings.rate.toFixed(1);
    applyVoiceMode();
    saveSettings();
  }

  // With the page's own voice the live region stays quiet, so a screen reader does not say each
  // cue a second time; in screen-reader mode the page is silent and the region announces.
  function applyVoiceMode() {
    ui.answer.setAttribute("aria-live", settings.voice === "reader" ? "assertive" : "off");
  }

  // --- speech and vibration ---------------------------------------------------------------------
  function say(text) {
    if (settings.voice !== "page" || !("speechSynthesis" in window)) return;
    try {
      window.speechSynthesis.cancel(); // the newest cue matters, not one still queued
      const utterance = new SpeechSynthesisUtterance(text);
      utterance.rate = settings.rate;
      utterance.lang = "en-US";
      window.speechSynthesis.speak(utterance);
    } catch (err) { /* no speech on this browser: the text stays on screen */ }
  }

  function announce(text, urgency) {
    ui.answer.textContent = text;
    say(text);
    if (urgency === "high" && settings.vibrate && navigator.vibrate) navigator.vibrate([250, 120, 250]);
  }

  function showProblem(text) { ui.problem.textContent = text; }

  // --- server -------------------------------------------------------------------------------------
  async function api(path, options) {
    const headers = settings.token ? { Authorization: "Bearer " + settings.token } : {};
    const response = await fetch(path, { ...options, headers });
    const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiProblem(response.status, body.error, body.detail || response.statusText,
                           Number(response.headers.get("Retry-After")) || 0);
    }
    return body;
  }

  async function newSession() {
    const body = await api("v1/sessions", { method: "POST" });
    return body.session;
  }

  // --- the loop -------------------------------------------------------------------------------------
  const state = { running: false, stream: null, session: null, timer: null, wakeLock: null, backoff: 0, lost: 0 };

  async function grabFrame() {
    const video = ui.video;
    if (video.readyState < 2 || !video.videoWidth) return null;
    const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    ui.canvas.width = Math.round(video.videoWidth * scale);
    ui.canvas.height = Math.round(video.videoHeight * scale);
    ui.canvas.getContext("2d").drawImage(video, 0, 0, ui.canvas.width, ui.canvas.height);
    return new Promise((resolve) => ui.canvas.toBlob(resolve, "image/jpeg", 0.85));
  }

  function show(result) {
    ui.urgency.textContent = "Urgency: " + result.cue.urgency;
    ui.urgency.className = "urgency " + result.cue.urgency;
    ui.directions.replaceChildren(...[...result.directions.close, ...result.directions.far].map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    if (result.speak.say) announce(result.speak.text, result.cue.urgency);
  }

  async function sendFrame() {
    const frame = await grabFrame();
    if (!frame || !state.running) return;
    const form = new FormData();
    form.append("image", frame, "frame.jpg");
    form.append("session", state.session);
    form.append("verbosity", settings.verbosity);
    const result = await api("v1/describe", { method: "POST", body: form });
    if (state.running) show(result);
  }

  async function handleError(err) {
    if (!(err instanceof ApiProblem)) { // the network: say it once, keep trying
      state.lost += 1;
      showProblem("No connection to the server.");
      if (state.lost === 3) say("No connection to the server.");
      return;
    }
    if (err.status === 401) {
      const text = "The server needs its access token: open Settings.";
      stop(text);
      showProblem(text + " (" + err.message + ")");
      return;
    }
    if (err.code === "unknown_session") { state.session = await newSession(); return; }
    if (err.status === 429 || err.status === 503) state.backoff = Math.max(1, err.retryAfter) * 1000;
    showProblem(err.message);
  }

  async function tick() {
    if (!state.running) return;
    const began = performance.now();
    state.backoff = 0;
    try {
      await sendFrame();
      state.lost = 0;
      if (state.running) showProblem("");
    } catch (err) {
      try { await handleError(err); } catch (again) { showProblem(String(again.message || again)); }
    }
    if (state.running) {
      const wait = settings.interval * 1000 - (performance.now() - began) + state.backoff;
      state.timer = setTimeout(tick, Math.max(0, wait));
    }
  }

  async function start() {
    readSettings();
    showProblem("");
    state.running = true;
    ui.start.textContent = "Stop";
    ui.start.setAttribute("aria-pressed", "true");
    say("Starting."); // inside the button press: lets mobile browsers speak later on their own
    ui.answer.textContent = "Starting…";
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      stop("No camera here: open the page over https.");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (err) {
      stop("The camera could not start: " + err.message);
      return;
    }
    ui.video.srcObject = state.stream;
    ui.video.dataset.live = "";
    await ui.video.play().catch(() => {});
    try { state.wakeLock = await navigator.wakeLock.request("screen"); } catch (err) { state.wakeLock = null; }
    try {
      state.session = await newSession();
    } catch (err) {
      stop(err.status === 401 ? "The server needs its access token: open Settings." : "No connection to the server.");
      showProblem(err.message);
      return;
    }
    ui.answer.textContent = "Looking…";
    tick();
  }

  function stop(message) {
    const session = state.session;
    state.running = false;
    state.session = null;
    clearTimeout(state.timer);
    if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
    state.stream = null;
    ui.video.srcObject = null;
    delete ui.video.dataset.live;
    if (state.wakeLock) state.wakeLock.release().catch(() => {});
    state.wakeLock = null;
    if (session) api("v1/sessions/" + encodeURIComponent(session), { method: "DELETE" }).catch(() => {});
    ui.start.textContent = "Start";
    ui.start.setAttribute("aria-pressed", "false");
    announce(message || "Stopped.", "low");
  }

  // --- wiring -----------------------------------------------------------------------------------------
  ui.start.addEventListener("click", () => (state.running ? stop() : start()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.running) stop();
  });
  ui.form.addEventListener("input", readSettings);
  ui.form.addEventListener("change", readSettings);
  ui.form.addEventListener("submit", (event) => event.preventDefault());
  showSettings();
  if (!window.isSecureContext) {
    showProblem("Browsers give the camera only to secure pages: start the server with --https " +
                "(or open the page on this computer at localhost).");
  }
})();
