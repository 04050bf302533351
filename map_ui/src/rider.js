// The rider's tracking page: /track/{trip_id}?token=… (the share_url).

import "maplibre-gl/dist/maplibre-gl.css";
import "./styles/base.css";
import "./styles/rider.css";

import { bounds, CameraPolicy } from "./lib/camera.js";
import { TripChannel } from "./lib/channel.js";
import { byId, setText } from "./lib/dom.js";
import { describe, describeSignal, formatDistance, formatDuration, timeline } from "./lib/format.js";
import { Polyline } from "./lib/geo.js";
import { createMap, loadMapConfig, maplibregl, whenLoaded } from "./lib/map.js";
import { CarMotion } from "./lib/motion.js";
import { applyFrame, targetPoint, TERMINAL } from "./lib/trip.js";
import { carElement, pinElement } from "./lib/markers.js";

const origin = window.location.origin;
const tripId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop() ?? "");
const token = new URLSearchParams(window.location.search).get("token");

const ui = {
  conn: byId("conn"),
  connLabel: byId("conn-label"),
  recenter: byId("recenter"),
  sheet: byId("sheet"),
  eyebrow: byId("eyebrow"),
  headline: byId("headline"),
  detail: byId("detail"),
  signal: byId("signal"),
  timeline: byId("timeline"),
  driver: byId("driver"),
  final: byId("final"),
  finalTitle: byId("final-title"),
  finalDetail: byId("final-detail"),
  finalStats: byId("final-stats"),
  problem: byId("problem"),
  problemTitle: byId("problem-title"),
  problemDetail: byId("problem-detail"),
  announce: byId("announce"),
};

const PROBLEMS = {
  missing_token: ["This tracking link is incomplete", "Open the link exactly as you received it."],
  unauthorized: ["This tracking link has expired", "The link is no longer valid. Ask for a new one."],
  forbidden: ["This link is for a different trip", "Open the link you received for this trip."],
  not_found: ["We can't find this trip", "It may have ended a while ago, or the link is mistyped."],
  bad_request: ["This tracking link is not valid", "Open the link exactly as you received it."],
};

let trip = null;
let statusBeforeCancel = null;
let lastAnnounced = null;
const motion = new CarMotion();
const camera = new CameraPolicy();
let map = null;
let carMarker = null;
let pickupMarker = null;
let dropoffMarker = null;
let routeLine = null;
let routeSplitAt = -1;
let animating = false;
let channel = null;
// What the page went through, for the browser tests and for debugging.
const statusLog = [];
const connLog = [];

function showProblem(reason) {
  const [title, detail] = PROBLEMS[reason] ?? ["Something went wrong", "Please try the link again."];
  setText(ui.problemTitle, title);
  setText(ui.problemDetail, detail);
  ui.problem.hidden = false;
  ui.sheet.hidden = true;
  ui.conn.hidden = true;
  document.title = title;
}

function setConnection(state, info) {
  connLog.push({ state, transport: info.transport, code: info.code ?? null });
  const labels = {
    connecting: "Connecting…",
    live: info.transport === "sse" ? "Live · fallback" : "Live",
    reconnecting: info.attempt ? `Reconnecting… (attempt ${info.attempt})` : "Reconnecting…",
    ended: "Trip ended",
    failed: "Disconnected",
  };
  const offline = state !== "live" && state !== "ended" && navigator.onLine === false;
  ui.conn.dataset.state = offline ? "offline" : state;
  ui.conn.dataset.transport = info.transport ?? "websocket";
  setText(ui.connLabel, offline ? "Offline · waiting for network" : labels[state] ?? state);
  if (state === "failed") showProblem(info.reason);
}

// ---- the card ----------------------------------------------------------

function renderCard(nowMs = Date.now()) {
  if (!trip) return;
  const text = describe(trip, nowMs);
  ui.sheet.dataset.tone = text.tone;
  ui.sheet.dataset.status = trip.status;
  setText(ui.eyebrow, trip.kind === "delivery" ? `Delivery ${trip.id}` : `Trip ${trip.id}`);
  setText(ui.headline, text.headline);
  // The tab says it too, for a rider who switched to another one.
  if (!TERMINAL.has(trip.status)) document.title = `${text.headline} · Trip ${trip.id}`;
  setText(ui.detail, text.detail);
  const signal = describeSignal(trip, nowMs);
  ui.signal.hidden = !signal;
  setText(ui.signal, signal);
  const speed = trip.driver?.speed;
  const driverText = trip.driver_id && !TERMINAL.has(trip.status)
    ? `${trip.kind === "delivery" ? "Courier" : "Driver"} ${trip.driver_id}` +
      (speed != null && speed > 1 ? ` · ${Math.round(speed * 3.6)} km/h` : "")
    : "";
  setText(ui.driver, driverText);
  renderTimeline();
  if (trip.status !== lastAnnounced) {
    lastAnnounced = trip.status;
    setText(ui.announce, text.headline);
  }
}

function renderTimeline() {
  const steps = timeline(trip.status, trip.kind, statusBeforeCancel);
  const key = steps.map((s) => s.state).join(",");
  if (ui.timeline.dataset.key === key) return;
  ui.timeline.dataset.key = key;
  ui.timeline.replaceChildren(
    ...steps.map(({ step, label, state }) => {
      const li = document.createElement("li");
      li.dataset.step = step;
      li.dataset.state = state;
      li.textContent = label;
      if (state === "current") li.setAttribute("aria-current", "step");
      const hidden = document.createElement("span");
      hidden.className = "visually-hidden";
      hidden.textContent = state === "done" ? " (done)" : state === "current" ? " (now)" : "";
      li.append(hidden);
      return li;
    }),
  );
}

async function renderFinal() {
  ui.final.hidden = false;
  ui.final.dataset.status = trip.status;
  ui.sheet.hidden = true;
  const done = trip.status === "completed";
  setText(ui.finalTitle, done ? (trip.kind === "delivery" ? "Delivered" : "You've arrived") : "Trip cancelled");
  const at = trip.updated_ts ? new Date(trip.updated_ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  setText(ui.finalDetail, done ? `Trip completed at ${at}` : `This trip was cancelled at ${at}`);
  document.title = done ? "Trip completed" : "Trip cancelled";
  ui.final.focus?.();
  if (!done) return;
  try {
    const response = await fetch(`${origin}/v1/trips/${encodeURIComponent(tripId)}/trail`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!response.ok) return;
    const trail = await response.json();
    const coords = trail?.geometry?.coordinates ?? [];
    if (coords.length >= 2) {
      const line = new Polyline(coords);
      setText(ui.finalStats, `${formatDistance(line.length)} driven on this trip`);
      setLine("trail", coords);
      map.fitBounds(bounds(coords), { padding: fitPadding(), maxZoom: 17, duration: 600 });
    }
  } catch {
    // The summary is a nicety; the final screen stands without it.
  }
}

// ---- the map -------------------------------------------------------------

function fitPadding() {
  const wide = window.innerWidth >= 768;
  const sheet = ui.sheet.hidden ? ui.final : ui.sheet;
  const rect = sheet.getBoundingClientRect();
  return wide
    ? { top: 70, bottom: 50, left: rect.right + 50, right: 70 }
    : { top: 80, bottom: Math.min(window.innerHeight * 0.6, window.innerHeight - rect.top + 40), left: 56, right: 56 };
}

function setLine(id, coords) {
  const source = map.getSource(id);
  const data = { type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: coords } };
  if (source) source.setData(data);
}

function addRouteLayers() {
  const empty = { type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: [] } };
  for (const id of ["route-remaining", "route-travelled", "trail"]) {
    map.addSource(id, { type: "geojson", data: empty });
  }
  const round = { "line-cap": "round", "line-join": "round" };
  const width = (w) => ["interpolate", ["exponential", 1.5], ["zoom"], 12, w * 0.5, 16, w, 19, w * 2.2];
  map.addLayer({ id: "route-travelled", type: "line", source: "route-travelled", layout: round,
    paint: { "line-color": "#9aa3b2", "line-width": width(4), "line-opacity": 0.8 } });
  map.addLayer({ id: "route-casing", type: "line", source: "route-remaining", layout: round,
    paint: { "line-color": "#ffffff", "line-width": width(9) } });
  map.addLayer({ id: "route-remaining", type: "line", source: "route-remaining", layout: round,
    paint: { "line-color": "#1d4ed8", "line-width": width(5) } });
  map.addLayer({ id: "trail", type: "line", source: "trail", layout: round,
    paint: { "line-color": "#0f766e", "line-width": width(4) } });
}

function updateRoute() {
  const coords = trip?.route?.coordinates;
  const line = coords && coords.length >= 2 && !TERMINAL.has(trip.status) ? coords : null;
  if (line === routeLine) return;
  routeLine = line;
  routeSplitAt = -1;
  motion.setRoute(line);
  if (!map?.getSource("route-remaining")) return;
  setLine("route-remaining", line ?? []);
  setLine("route-travelled", []);
}

function updatePins() {
  if (!trip) return;
  if (!pickupMarker && trip.pickup) {
    pickupMarker = new maplibregl.Marker({ element: pinElement("pickup", "Pickup"), anchor: "bottom" })
      .setLngLat([trip.pickup.lon, trip.pickup.lat]).addTo(map);
  }
  if (!dropoffMarker && trip.dropoff) {
    dropoffMarker = new maplibregl.Marker({ element: pinElement("dropoff", "Dropoff"), anchor: "bottom" })
      .setLngLat([trip.dropoff.lon, trip.dropoff.lat]).addTo(map);
  }
  // Once picked up, the pickup pin only clutters the view.
  pickupMarker?.getElement().classList.toggle("past", ["in_progress", "arrived_dropoff", "completed"].includes(trip.status));
}

function drawCar(nowMs) {
  const pose = motion.at(nowMs);
  if (!pose || !trip?.driver || TERMINAL.has(trip.status)) {
    carMarker?.remove();
    carMarker = null;
    return;
  }
  if (!carMarker) {
    carMarker = new maplibregl.Marker({ element: carElement(), rotationAlignment: "map" })
      .setLngLat(pose.lonLat).addTo(map);
  }
  carMarker.setLngLat(pose.lonLat);
  carMarker.setRotation(pose.heading);
  carMarker.getElement().classList.toggle("stale", Boolean(trip.signal_lost));
  const line = motion.route;
  if (line && pose.alongM != null && Math.abs(pose.alongM - routeSplitAt) > 2) {
    routeSplitAt = pose.alongM;
    const [travelled, remaining] = line.split(pose.alongM);
    setLine("route-travelled", travelled);
    setLine("route-remaining", remaining);
  }
}

function animate() {
  if (animating) return;
  animating = true;
  const frame = () => {
    const now = performance.now();
    drawCar(now);
    if (motion.moving(now)) requestAnimationFrame(frame);
    else animating = false;
  };
  requestAnimationFrame(frame);
}

function keepInView(force = false) {
  if (!map || !trip) return;
  const now = performance.now();
  if (!force && !camera.following(now)) return;
  const points = [];
  const car = motion.at(now);
  if (car) points.push(car.lonLat);
  const target = targetPoint(trip);
  if (target) points.push(target);
  if (points.length === 1 && trip.route?.coordinates) points.push(...trip.route.coordinates);
  const view = map.getBounds().toArray();
  if (force || camera.needsFit(view, points)) {
    map.fitBounds(bounds(points), { padding: fitPadding(), maxZoom: 17, duration: force ? 0 : 800 });
  }
}

// ---- frames --------------------------------------------------------------

function onFrame(frame) {
  const before = trip;
  trip = applyFrame(trip, frame);
  if (!trip) return;
  if (frame.type === "status" || (frame.type === "snapshot" && trip.status !== statusLog.at(-1))) {
    statusLog.push(trip.status);
  }
  if (frame.type === "status" && frame.status === "cancelled") statusBeforeCancel = frame.previous;
  if (frame.type === "snapshot" && trip.status === "cancelled") statusBeforeCancel ??= "requested";
  updateRoute();
  updatePins();
  const now = performance.now();
  if ((frame.type === "position" || frame.type === "snapshot") && trip.driver) {
    motion.update(trip.driver, now);
    animate();
  }
  if (TERMINAL.has(trip.status)) {
    motion.clear();
    drawCar(now);
    if (!before || !TERMINAL.has(before.status)) renderFinal();
  }
  if (!animating) drawCar(now); // signal and status change how the car looks
  renderCard();
  if (frame.type === "status" || frame.type === "snapshot") keepInView(frame.type === "snapshot" && !before);
}

// ---- start ---------------------------------------------------------------

async function loadTrip() {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(`${origin}/v1/trips/${encodeURIComponent(tripId)}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (response.ok) return { trip: await response.json() };
      const reason = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 422: "bad_request" }[response.status];
      if (reason) return { problem: reason };
    } catch {
      // the network: retry below
    }
    setConnection("reconnecting", { attempt });
    await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
  }
}

async function main() {
  if (!token || !tripId) {
    showProblem("missing_token");
    return;
  }
  const [config, loaded] = await Promise.all([loadMapConfig(origin), loadTrip()]);
  if (loaded.problem) {
    showProblem(loaded.problem);
    return;
  }
  map = createMap(byId("map"), config);
  await whenLoaded(map);
  addRouteLayers();
  onFrame({ type: "snapshot", trip: loaded.trip });
  for (const event of ["dragstart", "zoomstart", "rotatestart"]) {
    map.on(event, (e) => {
      if (!e.originalEvent) return; // our own camera moves
      camera.userMoved(performance.now());
      ui.recenter.hidden = false;
    });
  }
  ui.recenter.addEventListener("click", () => {
    camera.recenter();
    ui.recenter.hidden = true;
    keepInView(true);
  });
  if (!TERMINAL.has(loaded.trip.status)) {
    channel = new TripChannel({ origin, tripId, token, onFrame, onState: setConnection });
    channel.start();
  } else {
    setConnection("ended", {});
  }
  window.addEventListener("online", () => channel?.retryNow());
  window.addEventListener("offline", () => setConnection(channel?.state ?? "reconnecting", {}));
  // The card's "last update 40 s ago" and the camera are time-driven too.
  setInterval(() => {
    renderCard();
    if (camera.following(performance.now())) ui.recenter.hidden = true;
    keepInView();
  }, 1000);
  // For the browser tests and for debugging from the console.
  window.__rider = { map, motion, statusLog, connLog, get trip() { return trip; }, get channel() { return channel; } };
}

main();
