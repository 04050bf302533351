// The ops dashboard: /ops?token=<ops token>.

import "maplibre-gl/dist/maplibre-gl.css";
import "./styles/base.css";
import "./styles/ops.css";

import { backoffDelayMs } from "./lib/backoff.js";
import { TripChannel } from "./lib/channel.js";
import { byId, setText, takeToken } from "./lib/dom.js";
import { Fleet, rates, STATUS_COLORS, STATUS_LABELS } from "./lib/fleet.js";
import { formatDistance, formatDuration } from "./lib/format.js";
import { createMap, loadMapConfig, whenLoaded } from "./lib/map.js";
import { applyFrame } from "./lib/trip.js";

const TOKEN_KEY = "tracking.ops.token";
const origin = window.location.origin;
const ui = {
  counts: byId("counts"),
  stats: byId("stats"),
  conn: byId("conn"),
  connLabel: byId("conn-label"),
  panel: byId("panel"),
  panelClose: byId("panel-close"),
  panelEyebrow: byId("panel-eyebrow"),
  panelTitle: byId("panel-title"),
  panelFacts: byId("panel-facts"),
  login: byId("login"),
  loginError: byId("login-error"),
  loginToken: byId("login-token"),
  list: byId("driver-list"),
};

let token = takeToken(TOKEN_KEY);
// Keep the token out of the address bar, history and screenshots.
if (new URL(window.location.href).searchParams.has("token")) {
  window.history.replaceState(null, "", window.location.pathname);
}

const fleet = new Fleet();
let map = null;
let socket = null;
let socketAttempt = 0;
let selected = null; // {driverId, tripId, trip, channel}
let lastStats = null;

// ---- fleet feed --------------------------------------------------------

function viewBox() {
  const b = map.getBounds();
  // A margin, so drivers just outside the edge are there when panning.
  const dx = (b.getEast() - b.getWest()) * 0.15;
  const dy = (b.getNorth() - b.getSouth()) * 0.15;
  return [b.getWest() - dx, b.getSouth() - dy, b.getEast() + dx, b.getNorth() + dy].map((v) => +v.toFixed(6));
}

function setConn(state, text) {
  ui.conn.dataset.state = state;
  setText(ui.connLabel, text);
}

function connectFleet() {
  const url = `${origin.replace(/^http/, "ws")}/v1/fleet/ws?bbox=${viewBox().join(",")}&token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url);
  socket = ws;
  setConn(socketAttempt ? "reconnecting" : "connecting", socketAttempt ? `Reconnecting… (attempt ${socketAttempt})` : "Connecting…");
  ws.onmessage = (message) => {
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (frame.type === "drivers") {
      socketAttempt = 0;
      setConn("live", "Live");
      fleet.apply(frame, performance.now());
      drawFleet();
    }
  };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    if (event.code === 4401 || event.code === 4403) {
      askForToken(event.code === 4401 ? "That token is not valid or has expired." : "That token is not an ops token.");
      return;
    }
    socketAttempt += 1;
    const delay = backoffDelayMs(socketAttempt);
    setConn("reconnecting", `Reconnecting… (attempt ${socketAttempt})`);
    setTimeout(connectFleet, delay);
  };
}

function sendBox() {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "bbox", bbox: viewBox() }));
}

// ---- drawing -------------------------------------------------------------

let drawing = false;
function drawFleet() {
  if (drawing) return;
  drawing = true;
  let lastDraw = 0;
  const frame = (now) => {
    // ~25 frames a second is smooth for 1 s glides and spares the CPU.
    if (now - lastDraw >= 40) {
      lastDraw = now;
      map.getSource("drivers")?.setData(fleet.geojson(now, Date.now()));
    }
    if (fleet.moving(now)) requestAnimationFrame(frame);
    else {
      map.getSource("drivers")?.setData(fleet.geojson(now, Date.now()));
      drawing = false;
    }
  };
  requestAnimationFrame(frame);
}

function arrowImage() {
  const size = 48;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.beginPath();
  ctx.moveTo(size / 2, 6);
  ctx.lineTo(size / 2 + 9, size / 2 + 10);
  ctx.lineTo(size / 2, size / 2 + 5);
  ctx.lineTo(size / 2 - 9, size / 2 + 10);
  ctx.closePath();
  ctx.fill();
  return ctx.getImageData(0, 0, size, size);
}

function addFleetLayers() {
  map.addImage("arrow", arrowImage(), { pixelRatio: 2 });
  map.addSource("drivers", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addSource("selected-route", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "selected-route", type: "line", source: "selected-route",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: { "line-color": "#1d4ed8", "line-width": 5, "line-opacity": 0.85 } });
  const color = ["match", ["get", "status"], ...Object.entries(STATUS_COLORS).flat(), "#6b7280"];
  map.addLayer({ id: "drivers-halo", type: "circle", source: "drivers",
    filter: ["==", ["get", "id"], ""],
    paint: { "circle-radius": 16, "circle-color": "#1d4ed8", "circle-opacity": 0.2 } });
  map.addLayer({ id: "drivers", type: "circle", source: "drivers",
    paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 12, 6, 16, 11],
      "circle-color": color, "circle-stroke-color": "#ffffff", "circle-stroke-width": 2 } });
  map.addLayer({ id: "drivers-heading", type: "symbol", source: "drivers",
    filter: ["!=", ["get", "status"], "offline"],
    layout: { "icon-image": "arrow", "icon-rotate": ["get", "heading"], "icon-rotation-alignment": "map",
      "icon-allow-overlap": true, "icon-ignore-placement": true,
      "icon-size": ["interpolate", ["linear"], ["zoom"], 12, 0.5, 16, 0.9] } });
  map.on("click", "drivers", (e) => {
    const id = e.features?.[0]?.properties?.id;
    if (id) select(id);
  });
  map.on("mouseenter", "drivers", () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "drivers", () => { map.getCanvas().style.cursor = ""; });
}

function renderCounts() {
  const counts = fleet.counts(Date.now());
  const items = Object.entries(counts).map(([status, n]) => {
    const li = document.createElement("li");
    li.dataset.status = status;
    li.innerHTML = `<span class="swatch" style="background:${STATUS_COLORS[status]}"></span>`;
    const label = document.createElement("span");
    label.textContent = `${STATUS_LABELS[status]} `;
    const count = document.createElement("b");
    count.className = "count";
    count.textContent = String(n);
    li.append(label, count);
    return li;
  });
  const total = document.createElement("li");
  total.dataset.status = "total";
  total.innerHTML = `<span>Drivers </span><b class="count">${fleet.drivers.size}</b>`;
  ui.counts.replaceChildren(total, ...items);
  // A text list of the drivers for keyboard and screen-reader users.
  ui.list.replaceChildren(
    ...[...fleet.drivers.values()].slice(0, 200).map((d) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `${d.id}: ${STATUS_LABELS[fleet.statusOf(d, Date.now())]}`;
      button.addEventListener("click", () => select(d.id));
      li.append(button);
      return li;
    }),
  );
}

// ---- the selected driver ------------------------------------------------

function fact(label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function renderPanel() {
  if (!selected) return;
  const d = fleet.drivers.get(selected.driverId);
  const trip = selected.trip;
  setText(ui.panelEyebrow, `Driver ${selected.driverId}`);
  setText(ui.panelTitle, trip ? `Trip ${trip.id}` : d ? STATUS_LABELS[fleet.statusOf(d, Date.now())] : "Not in view");
  const facts = [];
  if (d) {
    const ago = Math.max(0, Math.round((Date.now() - d.ts) / 1000));
    facts.push(...fact("Last fix", `${ago} s ago`));
    if (d.speed != null) facts.push(...fact("Speed", `${Math.round(d.speed * 3.6)} km/h`));
  }
  if (trip) {
    facts.push(...fact("Status", trip.status.replaceAll("_", " ")));
    if (trip.eta?.eta_s != null) {
      facts.push(...fact(`ETA to ${trip.eta.target}`, `${formatDuration(trip.eta.eta_s)} · ${formatDistance(trip.eta.distance_m)}`));
    }
    if (trip.progress != null) facts.push(...fact("Leg progress", `${Math.round(trip.progress * 100)} %`));
    if (trip.signal_lost) facts.push(...fact("Signal", "lost"));
    facts.push(...fact("Kind", trip.kind));
  }
  ui.panelFacts.replaceChildren(...facts);
  const route = trip?.route?.coordinates;
  map.getSource("selected-route")?.setData(
    route ? { type: "Feature", properties: {}, geometry: trip.route } : { type: "FeatureCollection", features: [] },
  );
}

async function select(driverId) {
  unselect();
  const d = fleet.drivers.get(driverId);
  selected = { driverId, tripId: d?.trip_id ?? null, trip: null, channel: null };
  map.setFilter("drivers-halo", ["==", ["get", "id"], driverId]);
  ui.panel.hidden = false;
  renderPanel();
  ui.panel.focus();
  if (!selected.tripId) return;
  const mine = selected;
  const response = await fetch(`${origin}/v1/trips/${encodeURIComponent(mine.tripId)}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (selected !== mine || !response.ok) return;
  mine.trip = await response.json();
  renderPanel();
  mine.channel = new TripChannel({
    origin, tripId: mine.tripId, token,
    onFrame: (frame) => {
      if (selected !== mine) return;
      mine.trip = applyFrame(mine.trip, frame);
      renderPanel();
    },
  });
  mine.channel.start();
}

function unselect() {
  selected?.channel?.stop();
  selected = null;
  ui.panel.hidden = true;
  map?.setFilter("drivers-halo", ["==", ["get", "id"], ""]);
  map?.getSource("selected-route")?.setData({ type: "FeatureCollection", features: [] });
}

// ---- gateway figures -------------------------------------------------------

async function pollStats() {
  try {
    const response = await fetch(`${origin}/v1/ops/stats`, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) return;
    const stats = await response.json();
    const now = performance.now();
    const r = lastStats ? rates(lastStats.stats, stats, (now - lastStats.at) / 1000) : null;
    lastStats = { stats, at: now };
    const c = stats.gateway.connections ?? {};
    const rows = [
      ["Drivers connected", c.driver ?? 0],
      ["Riders", (c.rider ?? 0) + (c.sse ?? 0)],
      ["Points/s", r ? r.pointsPerS.toFixed(1) : "…"],
      ["Errors/min", r ? r.errorsPerMin.toFixed(1) : "…"],
    ];
    ui.stats.replaceChildren(...rows.flatMap(([k, v]) => fact(k, String(v))));
    ui.stats.title = "Figures of the gateway serving this page";
  } catch {
    // figures are best effort; the map goes on
  }
}

// ---- start -----------------------------------------------------------------

function askForToken(message) {
  ui.login.hidden = false;
  setText(ui.loginError, message ?? "");
  ui.loginToken.focus();
}

ui.login.addEventListener("submit", (e) => {
  e.preventDefault();
  token = ui.loginToken.value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.login.hidden = true;
  start();
});
ui.panelClose.addEventListener("click", unselect);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") unselect();
});

let started = false;
async function start() {
  if (!token) {
    askForToken();
    return;
  }
  if (!started) {
    started = true;
    const config = await loadMapConfig(origin);
    map = createMap(byId("map"), config);
    await whenLoaded(map);
    addFleetLayers();
    map.on("moveend", sendBox);
    setInterval(() => {
      renderCounts();
      renderPanel();
      drawFleet();
    }, 1000);
    setInterval(pollStats, 2000);
    pollStats();
    window.__ops = { map, fleet };
  }
  connectFleet();
}

start();
