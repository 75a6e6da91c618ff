"use client";
// The live room: rendered on the server with the snapshot (so the HTML already holds the last
// messages, the members and the reactions), then connected with @edgeroom/client from the
// snapshot's `(epoch, seq)`: every later event arrives exactly once, none is shown twice.
import { connectCounter, connectRoom, type Counter, type Room, type Status } from "@edgeroom/client";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { TokenSource } from "@/lib/token-source";
import { type ChatMessage, type ConnectInfo, type Json, type Member, type RoomSnapshot, nameOf, textOf } from "@/lib/types";

interface Props {
  snapshot: RoomSnapshot;
  connect: ConnectInfo;
}

const NAME_KEY = "edgeroom-chat:name";

/** The display name: `?name=` in the address, else the one saved in this browser, else a guest name. */
function chooseName(): string {
  const fromUrl = new URLSearchParams(window.location.search).get("name")?.trim();
  if (fromUrl) return fromUrl.slice(0, 40);
  const saved = window.localStorage.getItem(NAME_KEY)?.trim();
  if (saved) return saved.slice(0, 40);
  return `Guest ${Math.floor(1000 + Math.random() * 9000)}`;
}

function initials(name: string): string {
  return (
    name
      .split(/\s+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((part) => part[0]?.toUpperCase() ?? "")
      .join("") || "?"
  );
}

/** A stable hue per name, for the avatars. */
function hue(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

const STATUS_TEXT: Record<Status | "rendered", string> = {
  rendered: "rendered on the server",
  connecting: "connecting…",
  connected: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
  closed: "closed",
};

export function RoomClient({ snapshot, connect }: Props) {
  const [messages, setMessages] = useState<ChatMessage[]>(snapshot.messages);
  const [members, setMembers] = useState<readonly Member[]>(snapshot.members);
  const [state, setState] = useState<Record<string, Json>>(snapshot.state);
  const [reactions, setReactions] = useState({ value: snapshot.reactions.value, version: snapshot.reactions.version });
  const [status, setStatus] = useState<Status | "rendered">("rendered");
  const [me, setMe] = useState<number | null>(null);
  const [name, setName] = useState("");
  const [notice, setNotice] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const roomRef = useRef<Room | null>(null);
  const counterRef = useRef<Counter | null>(null);
  const listRef = useRef<HTMLOListElement | null>(null);

  useEffect(() => {
    const myName = chooseName();
    setName(myName);
    const tokens = new TokenSource(snapshot.room);
    const token = () =>
      tokens.get().catch((error: unknown) => {
        setNotice(`Could not get a token: ${error instanceof Error ? error.message : String(error)}`);
        throw error;
      });
    // Resume right after the rendered event: nothing between render and connect is missed,
    // nothing rendered is delivered again.
    const room = connectRoom({
      url: connect.url,
      tenant: connect.tenant,
      room: snapshot.room,
      since: snapshot.seq,
      epoch: snapshot.epoch,
      token,
      presence: { name: myName },
    });
    const counter = connectCounter({ url: connect.url, tenant: connect.tenant, name: snapshot.reactions.name, token });
    roomRef.current = room;
    counterRef.current = counter;
    const offs = [
      room.on("status", setStatus),
      room.on("welcome", (welcome) => setMe(welcome.connection_id)),
      room.on("message", ({ seq, body, sender }) => setMessages((list) => [...list, { seq, body, sender }])),
      room.on("presence", ({ members }) => setMembers(members)),
      room.on("state", ({ key, value, state }) => {
        if (key === null) setState(Object.fromEntries(state));
        else
          setState((current) => {
            const next = { ...current };
            if (value === undefined) delete next[key];
            else next[key] = value;
            return next;
          });
      }),
      room.on("gap", ({ resumeFrom, seq }) =>
        setNotice(`Events ${resumeFrom + 1} to ${seq} could not be replayed (the room's history no longer has them).`),
      ),
      room.on("error", (error) => console.warn(`edgeroom room: ${error.code}: ${error.message}`)),
      counter.on("change", ({ value, version }) =>
        setReactions((current) => (version > current.version ? { value, version } : current)),
      ),
      counter.on("error", (error) => console.warn(`edgeroom counter: ${error.code}: ${error.message}`)),
    ];
    return () => {
      for (const off of offs) off();
      room.close();
      counter.close();
      roomRef.current = null;
      counterRef.current = null;
    };
  }, [snapshot, connect]);

  // Keep the newest message in view.
  useEffect(() => {
    const list = listRef.current;
    if (list) list.scrollTop = list.scrollHeight;
  }, [messages.length]);

  function send(event: FormEvent) {
    event.preventDefault();
    const text = draft.trim();
    const room = roomRef.current;
    if (!text || !room) return;
    setDraft("");
    room.publish({ text, name }).catch((error: unknown) => setNotice(`Not sent: ${error instanceof Error ? error.message : String(error)}`));
  }

  // Presence is announced once typing pauses, not on every keystroke.
  const renameTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => () => {
    if (renameTimer.current) clearTimeout(renameTimer.current);
  }, []);
  function rename(next: string) {
    setName(next);
    const clean = next.trim().slice(0, 40);
    if (renameTimer.current) clearTimeout(renameTimer.current);
    if (!clean) return;
    renameTimer.current = setTimeout(() => {
      window.localStorage.setItem(NAME_KEY, clean);
      roomRef.current?.setPresence({ name: clean });
    }, 300);
  }

  function react() {
    counterRef.current?.add(1).catch((error: unknown) => setNotice(`Reaction not counted: ${error instanceof Error ? error.message : String(error)}`));
  }

  const topic = typeof state.topic === "string" ? state.topic : null;
  const live = status === "connected";
  const authorOf = (message: ChatMessage) => nameOf(message.body) ?? (message.sender === null ? "server" : `#${message.sender}`);

  return (
    <div className="app">
      <header className="bar">
        <div className="title">
          <h1>#{snapshot.room}</h1>
          {topic !== null && <p id="topic">{topic}</p>}
        </div>
        <span id="status" data-status={status} className={`status ${live ? "live" : ""}`}>
          <span className="dot" aria-hidden="true" />
          {STATUS_TEXT[status]}
        </span>
      </header>

      <div className="layout">
        <section className="chat" aria-label="Messages">
          <ol id="messages" ref={listRef}>
            {messages.length === 0 && <li className="empty">No messages yet. Say hello!</li>}
            {messages.map((message) => {
              const author = authorOf(message);
              return (
                <li key={message.seq} data-seq={message.seq} className={`msg ${message.sender !== null && message.sender === me ? "mine" : ""}`}>
                  <span className="avatar" style={{ background: `hsl(${hue(author)} 55% 46%)` }} aria-hidden="true">
                    {initials(author)}
                  </span>
                  <div>
                    <span className="author">{author}</span>
                    <p className="text">{textOf(message.body)}</p>
                  </div>
                </li>
              );
            })}
          </ol>
          {notice && (
            <p className="notice" role="status">
              {notice}
            </p>
          )}
          <form className="composer" onSubmit={send}>
            <input
              id="message"
              aria-label="Message"
              placeholder={live ? "Write a message…" : "Connecting…"}
              value={draft}
              onChange={(e) => setDraft(e.target.value)}
              maxLength={2000}
              autoComplete="off"
            />
            <button type="submit" disabled={!live || draft.trim() === ""}>
              Send
            </button>
          </form>
        </section>

        <aside className="side">
          <section className="card">
            <h2>Reactions</h2>
            <button id="react" type="button" className="react" onClick={react} disabled={status === "rendered"} aria-label="Add a heart">
              <span aria-hidden="true">♥</span>
              <span id="reactions-count">{reactions.value}</span>
            </button>
          </section>

          <section className="card">
            <h2>
              Here now <span id="member-count">{members.length}</span>
            </h2>
            <ul id="members">
              {members.map((member) => {
                const who = nameOf(member.data) ?? member.user ?? `#${member.connection_id}`;
                return (
                  <li key={member.connection_id} data-user={member.user ?? ""}>
                    <span className="avatar small" style={{ background: `hsl(${hue(who)} 55% 46%)` }} aria-hidden="true">
                      {initials(who)}
                    </span>
                    <span className="who">{who}</span>
                    {member.connection_id === me && <span className="you"> (you)</span>}
                  </li>
                );
              })}
            </ul>
            <label className="name">
              Your name
              <input id="name" value={name} onChange={(e) => rename(e.target.value)} maxLength={40} />
            </label>
          </section>
        </aside>
      </div>

      <footer id="rendered" data-seq={snapshot.seq} data-epoch={snapshot.epoch} data-source={snapshot.viewSource}>
        Rendered on the server at event {snapshot.seq} (room view from {snapshot.viewSource}, {snapshot.viewAgeMs} ms old), live from there on
        with @edgeroom/client.
      </footer>
    </div>
  );
}
