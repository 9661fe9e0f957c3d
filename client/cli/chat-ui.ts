/**
 * `parley chat ROOM`: an interactive terminal chat. Shows recent history,
 * then live messages, who comes and goes, and who is typing; each line you
 * type is posted. Commands: /who, /quit.
 */
import { createInterface } from "node:readline";
import type { ChatClient, ChatMessage, ServerEvent } from "../chat.js";

export function formatMessage(m: ChatMessage): string {
  const time = new Date(m.createdAtMs).toISOString().slice(11, 16);
  const body = m.deleted ? "(deleted)" : `${m.text}${m.editedAtMs ? " (edited)" : ""}`;
  const files = m.attachments.map((a) => ` [file ${a.name} ${a.fileId}]`).join("");
  const reply = m.replyTo ? ` ↪${m.replyTo}` : "";
  return `#${m.seq} ${time} ${m.author}${reply}: ${body}${files}`;
}

export async function runChatUi(chat: ChatClient, userId: string, roomId: string, historySize: number): Promise<void> {
  const page = await chat.history(roomId, { limit: historySize });
  const out = process.stdout;
  const rl = createInterface({ input: process.stdin, output: out, prompt: `${roomId}> `, terminal: process.stdin.isTTY });
  const print = (line: string) => {
    out.write(`\r\x1b[K${line}\n`);
    rl.prompt(true);
  };
  const room = await chat.getRoom(roomId);
  print(`— ${roomId}${room.room?.topic ? `: ${room.room.topic}` : ""} (${room.room?.memberCount ?? 0} members; /who, /quit)`);
  for (const m of [...page.messages].reverse()) print(formatMessage(m));
  const lastSeen = page.messages[0]?.eventSeq ?? 0;
  const online = new Set<string>();
  let lastTyping = 0;
  const typingShown = new Map<string, number>();

  const live = chat.live({
    onEvent: (ev: ServerEvent) => {
      const e = ev.event;
      if (!e) return;
      if (e.$case === "message" && e.value.roomId === roomId) {
        typingShown.delete(e.value.author);
        print(formatMessage(e.value));
      } else if (e.$case === "presence" && e.value.roomId === roomId) {
        if (e.value.full) {
          online.clear();
          for (const u of e.value.online) online.add(u);
          print(`* online: ${[...online].sort().join(", ")}`);
          return;
        }
        for (const u of e.value.online) if (!online.has(u)) (online.add(u), print(`* ${u} is online`));
        for (const u of e.value.offline) if (online.delete(u)) print(`* ${u} went offline`);
      } else if (e.$case === "typing" && e.value.roomId === roomId) {
        const now = Date.now();
        if (now - (typingShown.get(e.value.userId) ?? 0) > 5000) print(`* ${e.value.userId} is typing…`);
        typingShown.set(e.value.userId, now);
      } else if (e.$case === "membership" && e.value.roomId === roomId) {
        print(`* ${e.value.userId} ${e.value.change}${e.value.by && e.value.by !== e.value.userId ? ` by ${e.value.by}` : ""}`);
      } else if (e.$case === "room" && e.value.roomId === roomId) {
        print(`* topic: ${e.value.topic}${e.value.archived ? " (archived)" : ""}`);
      } else if (e.$case === "unsubscribed" && e.value.roomId === roomId) {
        print(`* you no longer receive ${roomId} (${e.value.reason})`);
      } else if (e.$case === "error") {
        print(`! ${e.value.code}: ${e.value.message}`);
      }
    },
    onReconnect: (err, attempt) => print(attempt < 0 ? `! session ended: ${err.message}` : `! connection lost (${err.message}); reconnecting…`),
  });
  live.subscribe(roomId, lastSeen);
  live.view(roomId);

  process.stdin.on("keypress", () => {
    const now = Date.now();
    if (now - lastTyping > 2000) {
      lastTyping = now;
      live.typing(roomId);
    }
  });
  rl.prompt();
  await new Promise<void>((resolve) => {
    rl.on("line", (line) => {
      const text = line.trim();
      if (!text) return rl.prompt();
      if (text === "/quit") return rl.close();
      if (text === "/who") return print(`* online: ${[...online].sort().join(", ")}`);
      // The echo comes back through the live session, in sequence order.
      chat.post(roomId, text).catch((err: Error) => print(`! not posted: ${err.message}`));
      rl.prompt();
    });
    rl.on("close", () => resolve());
  });
  live.close();
  void userId;
}
