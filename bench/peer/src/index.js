// The partyserver peer of edgeroom's benchmark: a room on a SQLite-backed Durable Object that does
// per message what an edgeroom room does (parse the JSON, insert it into the object's SQLite with a
// sequence number, broadcast it to every connection), written the way a partyserver app is written:
// hibernating WebSockets, `this.ctx.storage.sql`, `this.broadcast`, presence by join/leave
// broadcasts. Wire format (JSON text frames):
//   client → server  {"type":"publish","op_id":"…","body":…}
//   server → client  {"type":"welcome","id":"…","seq":N,"members":[{"id":"…"}]}      on connect
//                    {"type":"history","events":[{"seq":N,"sender":"…","body":…}]}  on connect with ?after=N
//                    {"type":"event","seq":N,"sender":"…","op_id":"…","body":…}     to everyone, sender included (its ack)
//                    {"type":"join","member":{"id":"…"}} / {"type":"leave","id":"…"} to the others
import { Server, routePartykitRequest } from "partyserver";

export class Room extends Server {
  static options = { hibernate: true };

  onStart() {
    this.ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT, op_id TEXT, body TEXT NOT NULL)",
    );
  }

  lastSeq() {
    return this.ctx.storage.sql.exec("SELECT COALESCE(MAX(seq), 0) AS seq FROM history").one().seq;
  }

  onConnect(connection, ctx) {
    const members = [];
    for (const other of this.getConnections()) members.push({ id: other.id });
    connection.send(JSON.stringify({ type: "welcome", id: connection.id, seq: this.lastSeq(), members }));
    const after = new URL(ctx.request.url).searchParams.get("after");
    if (after !== null) {
      const events = this.ctx.storage.sql
        .exec("SELECT seq, sender, body FROM history WHERE seq > ? ORDER BY seq", Number(after))
        .toArray()
        .map((row) => ({ seq: row.seq, sender: row.sender, body: JSON.parse(row.body) }));
      connection.send(JSON.stringify({ type: "history", events }));
    }
    this.broadcast(JSON.stringify({ type: "join", member: { id: connection.id } }), [connection.id]);
  }

  onMessage(connection, message) {
    let msg;
    try {
      msg = JSON.parse(message);
    } catch {
      connection.send(JSON.stringify({ type: "error", message: "not JSON" }));
      return;
    }
    if (msg.type !== "publish") return;
    const body = JSON.stringify(msg.body ?? null);
    const { seq } = this.ctx.storage.sql
      .exec("INSERT INTO history (sender, op_id, body) VALUES (?, ?, ?) RETURNING seq", connection.id, msg.op_id ?? null, body)
      .one();
    this.broadcast(JSON.stringify({ type: "event", seq, sender: connection.id, op_id: msg.op_id ?? null, body: msg.body ?? null }));
  }

  onClose(connection) {
    this.broadcast(JSON.stringify({ type: "leave", id: connection.id }), [connection.id]);
  }
}

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === "/healthz") return new Response("ok");
    return (await routePartykitRequest(request, env)) ?? new Response("Not found", { status: 404 });
  },
};
