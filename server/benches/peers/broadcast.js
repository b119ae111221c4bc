// A plain broadcast server, the way each library's documentation shows it: every text message one
// client sends goes to every connected client. The load tool (server/benches/load.rs, part 8) runs
// it beside Moat: `node broadcast.js ws|socketio|uws PORT`; it prints "listening" once it accepts.
"use strict";
const [kind, port] = [process.argv[2], Number(process.argv[3])];

if (kind === "ws") {
  const { WebSocketServer } = require("ws");
  const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });
  wss.on("connection", (socket) => {
    socket.on("message", (data, isBinary) => {
      for (const client of wss.clients) client.send(data, { binary: isBinary });
    });
  });
  wss.on("listening", () => console.log("listening"));
} else if (kind === "socketio") {
  const { Server } = require("socket.io");
  const http = require("http").createServer();
  // The load tool's readers do not answer pings (Moat's runs turn its pings off too).
  const io = new Server(http, {
    transports: ["websocket"],
    perMessageDeflate: false,
    pingInterval: 3600 * 1000,
    pingTimeout: 3600 * 1000,
  });
  io.on("connection", (socket) => {
    socket.on("m", (data) => io.emit("m", data));
  });
  http.listen(port, "127.0.0.1", () => console.log("listening"));
} else if (kind === "uws") {
  const uWS = require("uwebsockets");
  const app = uWS.App();
  app.ws("/*", {
    compression: uWS.DISABLED,
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0, // the load tool's readers do not answer pings (Moat's runs turn its pings off too)
    open: (ws) => ws.subscribe("c"),
    message: (ws, message, isBinary) => app.publish("c", message, isBinary),
  });
  app.listen("127.0.0.1", port, (token) => {
    if (!token) {
      console.error("cannot listen");
      process.exit(1);
    }
    console.log("listening");
  });
} else {
  console.error("usage: node broadcast.js ws|socketio|uws PORT");
  process.exit(2);
}
