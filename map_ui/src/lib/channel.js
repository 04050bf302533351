// The trip channel as the page sees it: one stream of frames that survives
// dropped sockets (reconnect with backoff and `since`, so nothing is missed),
// silent proxies (a watchdog), and networks that block WebSockets (Server-
// Sent Events fallback). Browser APIs are injected so the policy is testable.

import { backoffDelayMs } from "./backoff.js";

/** Close codes after which reconnecting cannot help. */
const FATAL = {
  4400: "bad_request",
  4401: "unauthorized",
  4403: "forbidden",
  4404: "not_found",
};
const NORMAL_CLOSE = 1000;

/**
 * @typedef {"connecting"|"live"|"reconnecting"|"ended"|"failed"} ChannelState
 */

export class TripChannel {
  /**
   * @param {object} options
   * @param {string} options.origin e.g. "https://track.example.com"
   * @param {string} options.tripId
   * @param {string} options.token rider (or ops) token
   * @param {(frame: object) => void} options.onFrame every new frame, in seq order
   * @param {(state: ChannelState, info: object) => void} [options.onState]
   * @param {number} [options.watchdogMs] silence after which the link is presumed dead
   * @param {number} [options.failuresBeforeFallback] WebSocket failures before SSE
   */
  constructor({
    origin,
    tripId,
    token,
    onFrame,
    onState = () => {},
    watchdogMs = 40_000,
    failuresBeforeFallback = 2,
    WebSocketImpl = globalThis.WebSocket,
    EventSourceImpl = globalThis.EventSource,
    timers = globalThis,
    random = Math.random,
    probe = null,
  }) {
    Object.assign(this, { origin, tripId, token, onFrame, onState, watchdogMs, failuresBeforeFallback });
    this.WebSocketImpl = WebSocketImpl;
    this.EventSourceImpl = EventSourceImpl;
    this.timers = timers;
    this.random = random;
    // Is the service reachable over plain HTTP? Tells "WebSockets are
    // blocked on this network" (fall back to SSE) from "the service is down"
    // (keep retrying the WebSocket).
    this.probe =
      probe ??
      (() =>
        fetch(`${origin}/healthz`, { cache: "no-store" })
          .then((r) => r.ok)
          .catch(() => false));
    /** Seq of the last event (or snapshot) delivered: the resume point. */
    this.lastSeq = null;
    this.transport = "websocket";
    this.state = "connecting";
    this.attempt = 0;
    this.wsFailures = 0;
    this.stopped = false;
    this.conn = null;
    this.retryTimer = null;
    this.watchdogTimer = null;
  }

  start() {
    this.#connect();
  }

  /** Close for good (page leaving, trip over). */
  stop() {
    this.stopped = true;
    this.#clearTimers();
    this.#closeConn();
  }

  /** Reconnect now (the browser came back online). */
  retryNow() {
    if (this.stopped || this.state === "live") return;
    this.timers.clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.#connect();
  }

  #url(path, params) {
    const query = new URLSearchParams({ token: this.token });
    for (const [k, v] of Object.entries(params)) if (v != null) query.set(k, String(v));
    return `${path}?${query}`;
  }

  #connect() {
    if (this.stopped) return;
    this.#closeConn();
    this.#setState(this.attempt === 0 && this.lastSeq == null ? "connecting" : "reconnecting");
    if (this.transport === "sse") this.#connectSse();
    else this.#connectWs();
  }

  #connectWs() {
    const base = this.origin.replace(/^http/, "ws");
    const path = `${base}/v1/trips/${encodeURIComponent(this.tripId)}/ws`;
    let ws;
    try {
      ws = new this.WebSocketImpl(this.#url(path, { since: this.lastSeq }));
    } catch {
      this.#failed(true);
      return;
    }
    let gotFrame = false;
    const handle = { close: () => ws.close() };
    this.conn = handle;
    ws.onmessage = (message) => {
      if (this.conn !== handle) return; // a socket we already gave up on
      gotFrame = true;
      this.#receive(message.data);
    };
    ws.onclose = (event) => {
      if (this.conn !== handle || this.stopped) return;
      this.conn = null;
      this.#clearWatchdog();
      if (event.code === NORMAL_CLOSE) {
        this.#end();
      } else if (FATAL[event.code]) {
        this.#fail(FATAL[event.code], event.code);
      } else {
        // A socket that closes before its first frame is a failure of the
        // transport (a proxy that refuses upgrades), not just a dropped link.
        this.#failed(!gotFrame, event.code);
      }
    };
    this.#armWatchdog();
  }

  #connectSse() {
    const path = `${this.origin}/v1/trips/${encodeURIComponent(this.tripId)}/events`;
    const source = new this.EventSourceImpl(this.#url(path, { since: this.lastSeq }));
    const handle = { close: () => source.close() };
    this.conn = handle;
    source.onmessage = (message) => {
      if (this.conn === handle) this.#receive(message.data);
    };
    source.onerror = () => {
      if (this.stopped || this.conn !== handle) return;
      // EventSource retries by itself on network errors (keeping
      // Last-Event-ID); it gives up (CLOSED) on an HTTP error or a 204.
      if (source.readyState === 2 /* CLOSED */) {
        this.conn = null;
        source.close();
        this.#clearWatchdog();
        this.#failed(false);
      } else {
        this.#setState("reconnecting");
      }
    };
    this.#armWatchdog();
  }

  #receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    this.#armWatchdog();
    if (this.state !== "live") {
      this.attempt = 0;
      this.wsFailures = 0;
      this.#setState("live");
    }
    if (frame.type === "snapshot") {
      this.lastSeq = frame.trip?.seq ?? this.lastSeq;
    } else if (typeof frame.seq === "number") {
      // A replay after a reconnect may overlap what was already shown.
      if (this.lastSeq != null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.onFrame(frame);
    if (frame.type === "status" && (frame.status === "completed" || frame.status === "cancelled")) {
      this.#end();
    } else if (frame.type === "snapshot" && ["completed", "cancelled"].includes(frame.trip?.status)) {
      this.#end();
    }
  }

  /** A transport failure: retry with backoff, or fall back to SSE. */
  async #failed(beforeFirstFrame, code = null) {
    if (this.stopped) return;
    if (this.transport === "websocket" && beforeFirstFrame) {
      this.wsFailures += 1;
      if (this.wsFailures >= this.failuresBeforeFallback && this.EventSourceImpl && (await this.probe())) {
        if (this.stopped) return;
        this.transport = "sse";
        this.attempt = 0;
        this.#connect();
        return;
      }
    }
    if (this.stopped) return;
    this.attempt += 1;
    const delayMs = backoffDelayMs(this.attempt, {}, this.random);
    this.#setState("reconnecting", { attempt: this.attempt, delayMs, code });
    this.retryTimer = this.timers.setTimeout(() => this.#connect(), delayMs);
  }

  #end() {
    this.stopped = true;
    this.#clearTimers();
    this.#closeConn();
    this.#setState("ended");
  }

  #fail(reason, code) {
    this.stopped = true;
    this.#clearTimers();
    this.#setState("failed", { reason, code });
  }

  #armWatchdog() {
    this.#clearWatchdog();
    this.watchdogTimer = this.timers.setTimeout(() => {
      // Heartbeats stopped: the link is dead even if no close arrived.
      this.#closeConn();
      this.#failed(false);
    }, this.watchdogMs);
  }

  #clearWatchdog() {
    if (this.watchdogTimer != null) this.timers.clearTimeout(this.watchdogTimer);
    this.watchdogTimer = null;
  }

  #clearTimers() {
    this.#clearWatchdog();
    if (this.retryTimer != null) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  #closeConn() {
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  #setState(state, info = {}) {
    this.state = state;
    this.onState(state, { transport: this.transport, ...info });
  }
}
