// Socket.IO 4 relay with the Redis adapter: the "what a team would pick
// instead of us" peer of the side-by-side benchmark.
//
//   node server.js --port P --redis redis://127.0.0.1:N [--host 127.0.0.1]
//
// Clients connect with handshake query `role=driver|rider&trip=<id>`.
// Riders join the trip's room; a driver's `pos` events are broadcast to
// that room (through Redis pub/sub, as in a multi-node deployment) and
// acknowledged with `{seq}`. Prints `ready <port>` once listening.
"use strict";

const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    host: { type: "string", default: "127.0.0.1" },
  },
});
if (args.port === undefined) {
  console.error("usage: node server.js --port P --redis redis://HOST:PORT");
  process.exit(2);
}

async function main() {
  const pubClient = createClient({ url: args.redis });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => console.error("redis:", err.message));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    perMessageDeflate: false,
    serveClient: false,
    adapter: createAdapter(pubClient, subClient),
  });

  io.use((socket, next) => {
    const { role, trip } = socket.handshake.query;
    if ((role !== "driver" && role !== "rider") || typeof trip !== "string" || !trip) {
      return next(new Error("query must have role=driver|rider and trip=<id>"));
    }
    next();
  });

  io.on("connection", (socket) => {
    const { role, trip } = socket.handshake.query;
    if (role === "rider") {
      socket.join(trip);
      return;
    }
    socket.on("pos", (payload, ack) => {
      io.to(trip).emit("pos", payload);
      if (typeof ack === "function") ack({ seq: payload?.seq });
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(Number(args.port), args.host, resolve);
  });
  process.stdout.write(`ready ${httpServer.address().port}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), 5000).unref();
    await io.close(); // disconnects sockets, closes the HTTP server and the adapter
    await Promise.allSettled([pubClient.quit(), subClient.quit()]);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
