// Recipient image viewer (docs/requirements.md S4.5). Each series is a stack of pre-rendered previews listed in #viewer-data:
// the wheel, keys, slider, buttons and swipes move through it; buttons, pinch and ctrl+wheel zoom; drag pans.
// Images come with Cache-Control: no-store, so the page holds its own prefetched copies (Image objects) around
// the current image. Texts come translated in data- attributes; none are written here.
// A run of frames with a video (#viewer-data "videos": ultrasound, XA, a cine) plays as that MP4: while it plays the
// video is shown and drives the position; paused, the frame's JPEG is shown (zoom, full size) and the video waits at
// that frame. Space plays and pauses, the arrow keys step a frame. A video that cannot play leaves the JPEGs.
"use strict";
(function () {
  const root = document.getElementById("viewer");
  const dataNode = document.getElementById("viewer-data");
  if (!root || !dataNode) return;
  const allSeries = JSON.parse(dataNode.textContent).series;
  if (!allSeries.length) return;

  const viewport = document.getElementById("viewer-viewport");
  const img = document.getElementById("viewer-image");
  const nav = document.getElementById("viewer-nav");
  const slider = document.getElementById("viewer-slider");
  const position = document.getElementById("viewer-position");
  const presetGroup = document.getElementById("viewer-presets");
  const presetButtons = Array.from(presetGroup.querySelectorAll("button[data-kind]"));
  const seriesButtons = Array.from(root.querySelectorAll("button[data-series]"));
  const video = document.getElementById("viewer-video");
  const playback = document.getElementById("viewer-playback");
  const playButton = document.getElementById("viewer-play");
  const speedGroup = document.getElementById("viewer-speed");
  const speedButtons = Array.from(speedGroup.querySelectorAll("button[data-rate]"));
  const videoHelp = document.getElementById("viewer-help-video");

  const PREFETCH_NEAR = 3; // both ways, always
  const PREFETCH_AHEAD = 10; // in the direction of travel, so fast scrolling finds its images loaded
  const CACHE_MAX = 160; // copies held; older ones are let go (memory on phones)
  const MAX_SCALE = 8;
  const FULL_FROM = 1.5; // zoomed further than this, a larger full-size JPEG replaces the preview
  const ZOOM_STEP = 1.25;
  const WHEEL_NOTCH = 40; // pixels of wheel travel per image (one mouse notch is ~100)
  const AXIS_AFTER = 8; // pixels a swipe travels before its direction is decided

  const state = { series: 0, index: 0, kind: "preview", scale: 1, x: 0, y: 0, direction: 1, rate: 1, playing: false };
  const unplayable = new Set(); // videos that failed: their frames are shown as JPEGs
  const cache = new Map(); // url -> Image, oldest first

  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  const images = () => allSeries[state.series].images;
  const urlOf = (image, kind) => (kind === "preview" ? image.src : image.src.replace(/preview\.jpg$/, `${kind}.jpg`));
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  function prefetch(i) {
    const list = images();
    if (i < 0 || i >= list.length) return;
    const url = urlOf(list[i], state.kind);
    const held = cache.get(url);
    cache.delete(url);
    if (held) {
      cache.set(url, held); // most recently used last
      return;
    }
    const copy = new Image();
    copy.decoding = "async";
    copy.src = url;
    cache.set(url, copy);
    while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  }

  function prefetchAround() {
    const forward = state.direction > 0 ? PREFETCH_AHEAD : PREFETCH_NEAR;
    const backward = state.direction < 0 ? PREFETCH_AHEAD : PREFETCH_NEAR;
    for (let d = 1; d <= Math.max(forward, backward); d++) {
      if (d <= forward) prefetch(state.index + d);
      if (d <= backward) prefetch(state.index - d);
    }
  }

  // Window presets exist at preview size only; the full-size image is fetched for the current image alone.
  const wantsFull = () => state.kind === "preview" && state.scale > FULL_FROM && Boolean(images()[state.index].full);

  // --- moving images: the video of the run the current frame belongs to ---
  const clipAt = (index) =>
    (allSeries[state.series].videos || []).find((v) => index >= v.first && index < v.first + v.frames && !unplayable.has(v.src)) || null;
  // A frame is shown from k / fps to (k + 1) / fps: seek to its middle, read back what is presented.
  const timeOf = (clip, index) => (index - clip.first + 0.5) / clip.fps;
  const frameOf = (clip, seconds) => clip.first + clamp(Math.floor(seconds * clip.fps + 0.01), 0, clip.frames - 1);

  function cueVideo(clip) {
    if (video.getAttribute("src") !== clip.src) {
      video.src = clip.src;
      video.width = images()[clip.first].w;
      video.height = images()[clip.first].h;
    }
    video.playbackRate = state.rate;
    if (!state.playing) video.currentTime = timeOf(clip, state.index);
  }

  function setPlaying(playing) {
    state.playing = playing;
    playButton.textContent = playing ? playback.dataset.pause : playback.dataset.play;
    if (playing) {
      video.hidden = false;
      img.hidden = true;
      return;
    }
    show();
    // The frame's JPEG replaces the video once it is there (most are prefetched).
    const reveal = () => {
      if (state.playing) return;
      img.hidden = false;
      video.hidden = true;
    };
    if (img.complete) reveal();
    else img.addEventListener("load", reveal, { once: true });
  }

  function play() {
    const clip = clipAt(state.index);
    if (!clip || state.playing) return;
    cueVideo(clip);
    setPlaying(true);
    if (state.index === clip.first + clip.frames - 1) video.currentTime = 0; // at the end: from the start
    const started = video.play();
    if (started) started.catch(() => pause());
    followVideo();
  }

  function pause() {
    if (!video.paused) video.pause();
    if (state.playing) setPlaying(false);
  }

  const togglePlay = () => (state.playing ? pause() : play());

  // While playing, the position follows the frame the video presents (requestVideoFrameCallback where there is one).
  function follow(seconds) {
    const clip = clipAt(state.index);
    if (!state.playing || !clip) return;
    const index = frameOf(clip, seconds);
    if (index !== state.index) {
      state.index = index;
      showPosition();
    }
  }
  function followVideo() {
    if (!state.playing || !("requestVideoFrameCallback" in video)) return;
    video.requestVideoFrameCallback((now, frame) => {
      follow(frame.mediaTime);
      followVideo();
    });
  }
  video.addEventListener("timeupdate", () => {
    if (!("requestVideoFrameCallback" in video)) follow(video.currentTime);
  });
  video.addEventListener("pause", () => {
    if (state.playing) setPlaying(false); // paused by the browser (another tab played, a phone's lock screen)
  });
  video.addEventListener("error", () => {
    const src = video.getAttribute("src");
    if (!src) return;
    unplayable.add(src);
    pause();
    img.hidden = false;
    video.hidden = true;
    video.removeAttribute("src");
    show();
    sessionEnded(src);
  });

  function setRate(rate) {
    state.rate = rate;
    video.playbackRate = rate;
    speedButtons.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.rate) === rate)));
  }

  function showPosition() {
    const list = images();
    const n = state.index + 1;
    const total = list.length;
    img.alt = `${seriesButtons[state.series].dataset.label}, ${fill(root.dataset.alt, { n, total })}`;
    position.textContent = `${n} / ${total}`;
    slider.max = String(total);
    slider.value = String(n);
    slider.setAttribute("aria-valuetext", fill(root.dataset.valuetext, { n, total }));
  }

  function show() {
    const list = images();
    const image = list[state.index];
    const clip = clipAt(state.index);
    playback.hidden = speedGroup.hidden = videoHelp.hidden = clip === null;
    if (clip) cueVideo(clip);
    else if (state.playing) pause();
    if (state.playing) {
      showPosition();
      return;
    }
    const url = urlOf(image, wantsFull() ? "full" : state.kind);
    if (img.getAttribute("src") !== url) img.src = url;
    if (img.getAttribute("width") !== String(image.w)) img.width = image.w;
    if (img.getAttribute("height") !== String(image.h)) img.height = image.h;
    showPosition();
    prefetch(state.index);
    prefetchAround();
  }

  function go(index) {
    if (state.playing) pause();
    const next = clamp(index, 0, images().length - 1);
    if (next === state.index) return;
    state.direction = next > state.index ? 1 : -1;
    state.index = next;
    show();
  }
  const step = (delta) => go(state.index + delta);
  const pageStep = () => Math.max(1, Math.round(images().length / 10));

  // --- zoom and pan: one CSS transform on the image, about the image's centre (= the viewport's centre) ---
  function applyTransform() {
    if (img.getAttribute("src").endsWith("/full.jpg") !== wantsFull()) show();
    const maxX = (img.clientWidth * (state.scale - 1)) / 2;
    const maxY = (img.clientHeight * (state.scale - 1)) / 2;
    state.x = clamp(state.x, -maxX, maxX);
    state.y = clamp(state.y, -maxY, maxY);
    img.style.transform = state.scale === 1 ? "" : `translate(${state.x}px, ${state.y}px) scale(${state.scale})`;
    video.style.transform = img.style.transform;
    viewport.classList.toggle("zoomed", state.scale > 1);
  }

  function zoomAt(factor, clientX, clientY) {
    const scale = clamp(state.scale * factor, 1, MAX_SCALE);
    if (scale === state.scale) return;
    const box = viewport.getBoundingClientRect();
    // Keep the point under the fingers (or the centre, for buttons and keys) where it is.
    const px = clientX === undefined ? 0 : clientX - (box.left + box.width / 2);
    const py = clientY === undefined ? 0 : clientY - (box.top + box.height / 2);
    const ratio = scale / state.scale;
    state.x = px - (px - state.x) * ratio;
    state.y = py - (py - state.y) * ratio;
    state.scale = scale;
    applyTransform();
  }

  function resetZoom() {
    state.scale = 1;
    state.x = 0;
    state.y = 0;
    applyTransform();
  }

  // --- series and window presets ---
  function selectSeries(i) {
    if (i === state.series) return;
    pause();
    state.series = i;
    state.index = 0;
    state.direction = 1;
    seriesButtons.forEach((b, j) => b.setAttribute("aria-pressed", String(j === i)));
    showPresets();
    nav.hidden = images().length < 2;
    resetZoom();
    show();
  }

  // The contrast buttons of the current series: those of the presets every image of it has.
  function showPresets() {
    const presets = allSeries[state.series].presets;
    if (!presets.includes(state.kind)) state.kind = "preview";
    presetGroup.hidden = presets.length === 0;
    presetButtons.forEach((b) => {
      b.hidden = b.dataset.kind !== "preview" && !presets.includes(b.dataset.kind);
      b.setAttribute("aria-pressed", String(b.dataset.kind === state.kind));
    });
  }

  // A CT's window presets are made in a second pass, after the share is ready (docs/architecture.md "Renders"):
  // while a series still waits for them (#viewer data-presets names where to ask), ask every few seconds and offer
  // them as soon as every image of the series has them. When the session or the share has ended the page reloads,
  // and the server shows the page that says so (as for an image); any other refusal stops the asking.
  const PRESETS_EVERY = 4000; // ms between two questions
  const PRESETS_FOR = 10 * 60 * 1000; // ms: a second pass takes seconds; give up after this
  function watchPresets() {
    const url = root.dataset.presets;
    if (!url) return;
    const until = Date.now() + PRESETS_FOR;
    const ask = () => {
      if (!allSeries.some((s) => s.waiting) || Date.now() > until) return;
      fetch(url, { credentials: "same-origin", redirect: "manual", headers: { Accept: "application/json" } })
        .then((r) => {
          if (r.ok) return r.json();
          if (r.type === "opaqueredirect" || [401, 410, 423].includes(r.status)) window.location.reload();
          return null;
        })
        .then((answer) => {
          if (!answer) return;
          answer.series.forEach((fresh) => {
            const known = allSeries.find((s) => s.id === fresh.id);
            if (known) Object.assign(known, { presets: fresh.presets, waiting: fresh.waiting });
          });
          showPresets();
          window.setTimeout(ask, PRESETS_EVERY);
        })
        .catch(() => window.setTimeout(ask, PRESETS_EVERY)); // the network, a moment: ask again
    };
    window.setTimeout(ask, PRESETS_EVERY);
  }

  function setKind(kind) {
    state.kind = kind;
    presetButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.kind === kind)));
    show();
  }

  // --- pointers: one finger (or the mouse) scrolls through the stack, or pans when zoomed; two fingers pinch ---
  const pointers = new Map();
  let gesture = null;

  const swipeUnit = () => clamp((viewport.clientHeight * 1.5) / images().length, 6, 24); // pixels per image

  function beginGesture() {
    const points = Array.from(pointers.values());
    if (points.length >= 2) {
      const [a, b] = points;
      gesture = {
        kind: "pinch",
        distance: Math.hypot(a.x - b.x, a.y - b.y) || 1,
        scale: state.scale,
        mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 },
      };
    } else if (points.length === 1) {
      const p = points[0];
      gesture = { kind: state.scale > 1 ? "pan" : "scroll", x: p.x, y: p.y, startX: p.x, startY: p.y, axis: null, acc: 0 };
    } else {
      gesture = null;
    }
    viewport.classList.toggle("dragging", gesture !== null && gesture.kind === "pan");
  }

  function moveGesture(e) {
    if (gesture.kind === "pinch") {
      const [a, b] = Array.from(pointers.values());
      const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      state.x += mid.x - gesture.mid.x;
      state.y += mid.y - gesture.mid.y;
      gesture.mid = mid;
      const wanted = (gesture.scale * (Math.hypot(a.x - b.x, a.y - b.y) || 1)) / gesture.distance;
      zoomAt(wanted / state.scale, mid.x, mid.y);
      applyTransform();
      return;
    }
    const dx = e.clientX - gesture.x;
    const dy = e.clientY - gesture.y;
    gesture.x = e.clientX;
    gesture.y = e.clientY;
    if (gesture.kind === "pan") {
      state.x += dx;
      state.y += dy;
      applyTransform();
      return;
    }
    if (!gesture.axis) {
      const tx = e.clientX - gesture.startX;
      const ty = e.clientY - gesture.startY;
      if (Math.abs(tx) + Math.abs(ty) < AXIS_AFTER) return;
      gesture.axis = Math.abs(ty) >= Math.abs(tx) ? "y" : "x";
      gesture.acc = -(gesture.axis === "y" ? ty : tx);
    } else {
      gesture.acc -= gesture.axis === "y" ? dy : dx; // up or left goes forward, as scrolling a page does
    }
    const unit = swipeUnit();
    while (Math.abs(gesture.acc) >= unit) {
      const direction = Math.sign(gesture.acc);
      step(direction);
      gesture.acc -= direction * unit;
    }
  }

  viewport.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    viewport.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    beginGesture();
  });
  viewport.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId) || gesture === null) return;
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    moveGesture(e);
  });
  const endPointer = (e) => {
    if (pointers.delete(e.pointerId)) beginGesture(); // a pinch that loses a finger goes on as a pan or scroll
  };
  viewport.addEventListener("pointerup", endPointer);
  viewport.addEventListener("pointercancel", endPointer);

  // --- wheel: one image per notch (or per WHEEL_NOTCH of trackpad travel); ctrl+wheel (trackpad pinch) zooms ---
  let wheelTravel = 0;
  viewport.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 800 : 1;
      if (e.ctrlKey) {
        zoomAt(clamp(Math.exp(-e.deltaY * unit * 0.01), 1 / ZOOM_STEP, ZOOM_STEP), e.clientX, e.clientY);
        return;
      }
      const delta = (Math.abs(e.deltaY) >= Math.abs(e.deltaX) ? e.deltaY : e.deltaX) * unit;
      if (Math.sign(delta) !== Math.sign(wheelTravel)) wheelTravel = 0;
      wheelTravel += delta;
      if (Math.abs(delta) >= WHEEL_NOTCH || Math.abs(wheelTravel) >= WHEEL_NOTCH) {
        step(Math.sign(wheelTravel));
        wheelTravel = 0;
      }
    },
    { passive: false },
  );

  // --- keys: on the image, on the page itself, and on the viewer's buttons (the slider keeps its own) ---
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.defaultPrevented) return;
    const target = e.target;
    const ours = target === viewport || target === document.body || (target instanceof HTMLButtonElement && root.contains(target));
    if (!ours) return;
    if (e.shiftKey && state.scale > 1 && e.key.startsWith("Arrow")) {
      const d = viewport.clientWidth / 10; // pan a tenth of the view; the image moves the other way
      state.x += e.key === "ArrowLeft" ? d : e.key === "ArrowRight" ? -d : 0;
      state.y += e.key === "ArrowUp" ? d : e.key === "ArrowDown" ? -d : 0;
      applyTransform();
      e.preventDefault();
      return;
    }
    const actions = {
      ArrowDown: () => step(1),
      ArrowRight: () => step(1),
      ArrowUp: () => step(-1),
      ArrowLeft: () => step(-1),
      PageDown: () => step(pageStep()),
      PageUp: () => step(-pageStep()),
      Home: () => go(0),
      End: () => go(images().length - 1),
      "+": () => zoomAt(ZOOM_STEP),
      "=": () => zoomAt(ZOOM_STEP),
      "-": () => zoomAt(1 / ZOOM_STEP),
      0: () => resetZoom(),
    };
    // Space plays and pauses a video; on a focused button it stays the button's own.
    if (e.key === " " && (target === viewport || target === document.body) && clipAt(state.index)) {
      togglePlay();
      e.preventDefault();
      return;
    }
    const action = actions[e.key];
    if (action) {
      action();
      e.preventDefault();
    }
  });

  // --- controls ---
  slider.addEventListener("input", () => go(Number(slider.value) - 1));
  document.getElementById("viewer-prev").addEventListener("click", () => step(-1));
  document.getElementById("viewer-next").addEventListener("click", () => step(1));
  root.querySelectorAll("button[data-zoom]").forEach((b) => {
    b.addEventListener("click", () => {
      if (b.dataset.zoom === "reset") resetZoom();
      else zoomAt(b.dataset.zoom === "in" ? ZOOM_STEP : 1 / ZOOM_STEP);
    });
  });
  presetButtons.forEach((b) => b.addEventListener("click", () => setKind(b.dataset.kind)));
  playButton.addEventListener("click", togglePlay);
  document.getElementById("viewer-frame-prev").addEventListener("click", () => step(-1));
  document.getElementById("viewer-frame-next").addEventListener("click", () => step(1));
  speedButtons.forEach((b) => b.addEventListener("click", () => setRate(Number(b.dataset.rate))));
  seriesButtons.forEach((b) => b.addEventListener("click", () => selectSeries(Number(b.dataset.series))));
  window.addEventListener("resize", applyTransform);

  // An image that fails to load because the session or the share ended (401, 410), or the share is locked (423):
  // reload, and the server shows the page that says so.
  function sessionEnded(url) {
    fetch(url, { method: "HEAD", redirect: "manual", credentials: "same-origin" })
      .then((r) => {
        if (r.type === "opaqueredirect" || [401, 410, 423].includes(r.status)) window.location.reload();
      })
      .catch(() => {});
  }
  img.addEventListener("error", () => sessionEnded(img.src));

  show();
  watchPresets();
})();
