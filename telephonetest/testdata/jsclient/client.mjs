// Conformance client: drives the official Phoenix JavaScript client (npm
// "phoenix", with "ws" as its WebSocket transport) against telephonetest.
//
// Usage: node client.mjs <socket endpoint, e.g. ws://127.0.0.1:PORT/telephone> <token> <path_id>
//
// It prints one JSON object per line on stdout ({"event": ...}) and reads
// commands, one JSON object per line, on stdin: {"cmd":"refresh"} and
// {"cmd":"leave"}. proxy_req pushes are answered automatically. The process
// exits by itself after 30 s whatever happens, so it can never hang a test.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { createInterface } from "node:readline";

const [endpoint, token, pathID] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (why) => {
  out({ event: "error", why: String(why) });
  process.exit(1);
};

setTimeout(() => fail("overall timeout"), 30000).unref();

const socket = new Socket(endpoint, {
  transport: WebSocket,
  params: { token },
  reconnectAfterMs: () => 60000, // a test failure, not a retry, if the socket drops
});
socket.onOpen(() => out({ event: "open", url: socket.endPointURL().replace(/token=[^&]*/, "token=REDACTED") }));
socket.onError((e) => out({ event: "socket_error", message: String(e && e.message) }));
socket.connect();

const channel = socket.channel(`telephone:${pathID}`, {});

channel.on("proxy_req", (req) => {
  out({ event: "proxy_req", req });
  channel.push("proxy_res", {
    request_id: req.request_id,
    status: 201,
    headers: { "Content-Type": "application/json", "X-Phoenix-JS": "1.7" },
    body: JSON.stringify({ method: req.method, path: req.path, query: req.query_string, body: req.body }),
  });
});

channel
  .join()
  .receive("ok", (resp) => out({ event: "joined", resp, join_ref: channel.joinRef() }))
  .receive("error", (resp) => fail("join error " + JSON.stringify(resp)))
  .receive("timeout", () => fail("join timeout"));

const commands = {
  refresh() {
    channel
      .push("refresh_token", {})
      .receive("ok", (resp) => out({ event: "refreshed", token: resp.token, expires_in: resp.expires_in }))
      .receive("error", (resp) => fail("refresh error " + JSON.stringify(resp)))
      .receive("timeout", () => fail("refresh timeout"));
  },
  leave() {
    channel
      .leave()
      .receive("ok", () => {
        out({ event: "left" });
        socket.disconnect(() => {
          out({ event: "closed" });
          process.exit(0);
        }, 1000);
      })
      .receive("timeout", () => fail("leave timeout"));
  },
};

createInterface({ input: process.stdin }).on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    fail("bad command " + line);
  }
  const cmd = commands[msg.cmd];
  if (!cmd) fail("unknown command " + line);
  cmd();
});
