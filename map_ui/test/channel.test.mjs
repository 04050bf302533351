// The channel's reconnect policy against scripted fake transports (the real
// sockets are exercised by the browser tests in tests/e2e).
import assert from "node:assert/strict";
import test from "node:test";

import { TripChannel } from "../src/lib/channel.js";

const settle = () => new Promise((resolve) => setImmediate(resolve));

function harness({ reachable = true } = {}) {
  const sockets = [];
  const sources = [];
  const timers = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      sockets.push(this);
    }
    close() {}
    frame(obj) {
      this.onmessage({ data: JSON.stringify(obj) });
    }
    drop(code) {
      this.onclose({ code });
    }
  }
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 1;
      sources.push(this);
    }
    close() {
      this.readyState = 2;
    }
  }
  const fakeTimers = {
    setTimeout: (fn, ms) => timers.push({ fn, ms }) - 1,
    clearTimeout: (id) => {
      if (id != null && timers[id]) timers[id].fn = null;
    },
  };
  const frames = [];
  const states = [];
  const channel = new TripChannel({
    origin: "http://gw",
    tripId: "t-1",
    token: "tok",
    onFrame: (f) => frames.push(f),
    onState: (s, info) => states.push([s, info.transport]),
    WebSocketImpl: FakeWebSocket,
    EventSourceImpl: FakeEventSource,
    timers: fakeTimers,
    random: () => 0.5,
    probe: async () => reachable,
  });
  const runRetry = () => {
    const timer = timers.findLast((t) => t.fn && t.ms < 20_000);
    const fn = timer.fn;
    timer.fn = null;
    fn();
  };
  return { channel, sockets, sources, frames, states, runRetry };
}

test("a dropped socket reconnects with since = the last seq, and overlap is skipped", async () => {
  const h = harness();
  h.channel.start();
  assert.equal(h.sockets[0].url, "ws://gw/v1/trips/t-1/ws?token=tok");
  h.sockets[0].frame({ type: "snapshot", trip: { seq: 5, status: "assigned" } });
  h.sockets[0].frame({ type: "position", seq: 6 });
  h.sockets[0].drop(1012);
  await settle();
  assert.deepEqual(h.states.at(-1), ["reconnecting", "websocket"]);
  h.runRetry();
  assert.equal(h.sockets[1].url, "ws://gw/v1/trips/t-1/ws?token=tok&since=6");
  h.sockets[1].frame({ type: "position", seq: 6 }); // replay overlap
  h.sockets[1].frame({ type: "status", seq: 7, status: "arrived_pickup" });
  assert.deepEqual(h.frames.map((f) => f.seq ?? f.trip.seq), [5, 6, 7]);
});

test("a socket that fails before its first frame twice, with HTTP working, falls back to SSE", async () => {
  const h = harness();
  h.channel.start();
  h.sockets[0].drop(1006);
  await settle();
  h.runRetry();
  h.sockets[1].drop(1006);
  await settle();
  assert.equal(h.sources.length, 1);
  assert.equal(h.sources[0].url, "http://gw/v1/trips/t-1/events?token=tok");
  h.sources[0].onmessage({ data: JSON.stringify({ type: "snapshot", trip: { seq: 3 } }) });
  assert.deepEqual(h.states.at(-1), ["live", "sse"]);
});

test("a service that is down gets WebSocket retries, not a fallback", async () => {
  const h = harness({ reachable: false });
  h.channel.start();
  for (let i = 0; i < 4; i++) {
    h.sockets[i].drop(1006);
    await settle();
    h.runRetry();
  }
  assert.equal(h.sources.length, 0);
  assert.equal(h.sockets.length, 5);
});

test("auth failures stop for good; a normal close ends the channel", () => {
  const h = harness();
  h.channel.start();
  h.sockets[0].drop(4401);
  assert.deepEqual(h.states.at(-1), ["failed", "websocket"]);
  assert.equal(h.sockets.length, 1);
  const g = harness();
  g.channel.start();
  g.sockets[0].frame({ type: "snapshot", trip: { seq: 1 } });
  g.sockets[0].frame({ type: "status", seq: 2, status: "completed" });
  assert.deepEqual(g.states.at(-1), ["ended", "websocket"]);
});
