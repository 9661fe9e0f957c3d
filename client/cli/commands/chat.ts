/**
 * Chat commands: `parley rooms …`, `parley post`, `parley history`,
 * `parley search`, `parley upload`, `parley download`, `parley chat ROOM`.
 *
 *   parley rooms create general --topic "everything"
 *   parley post general "hello @bob"
 *   parley chat general
 */
import type { Command } from "commander";
import { Role, RoomType, type ChatClient, type Room } from "../../chat.js";
import { downloadFile, uploadFile } from "../../files.js";
import { formatMessage, runChatUi } from "../chat-ui.js";
import { chatClient, withRoute } from "../chat-route.js";
import { printJson, UsageError } from "../context.js";

const ROLES: Record<string, Role> = { member: Role.ROLE_MEMBER, manager: Role.ROLE_MANAGER, owner: Role.ROLE_OWNER };
const roleName = (r: Role) => Object.keys(ROLES).find((k) => ROLES[k] === r) ?? "-";

function showRoom(r: Room): string {
  const type = r.type === RoomType.ROOM_TYPE_INVITE_ONLY ? "invite-only" : "open";
  return `${r.roomId}\t${type}${r.archived ? ",archived" : ""}\t${r.memberCount} members\t${roleName(r.myRole)}\t${r.topic}`;
}

/** Runs fn with a chat client for the command, then closes it. */
function act<A extends unknown[]>(fn: (c: { chat: ChatClient; userId: string; filesUrl?: string; json: boolean }, ...args: A) => Promise<void>) {
  return async (...args: unknown[]) => {
    const cmd = args.at(-1) as Command;
    const c = chatClient(cmd);
    try {
      await fn({ ...c, json: !!cmd.opts<{ json?: boolean }>().json }, ...(args.slice(0, -2) as A));
    } finally {
      c.close();
    }
  };
}

export function register(program: Command): void {
  const rooms = program.command("rooms").description("chat rooms: list, find, create, topic, archive, join, leave, invite, kick, roles");
  withRoute(rooms.command("list").description("rooms you belong to").option("--json")).action(act(async (c) => {
    const list = await c.chat.listRooms();
    if (c.json) return printJson(list);
    for (const r of list) console.log(showRoom(r));
  }));
  withRoute(rooms.command("find [query]").description("open rooms (and yours) matching the words").option("--json")).action(act(async (c, query?: string) => {
    const list = await c.chat.findRooms(query ?? "");
    if (c.json) return printJson(list);
    for (const r of list) console.log(showRoom(r));
  }));
  withRoute(rooms.command("create <room>").description("create a room; you are its owner").option("--invite-only", "members join by invitation only").option("--topic <text>", "topic", "").option("--description <text>", "description", "")).action(
    async (room: string, o: { inviteOnly?: boolean; topic: string; description: string }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const r = await c.chat.createRoom(room, { type: o.inviteOnly ? RoomType.ROOM_TYPE_INVITE_ONLY : RoomType.ROOM_TYPE_OPEN, topic: o.topic, description: o.description });
        console.log(`created ${showRoom(r)}`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(rooms.command("show <room>").description("room details and members").option("--json")).action(act(async (c, room: string) => {
    const d = await c.chat.getRoom(room);
    if (c.json) return printJson(d);
    console.log(showRoom(d.room!));
    if (d.room?.description) console.log(d.room.description);
    for (const m of d.members) console.log(`  ${roleName(m.role)}\t${m.userId}`);
    for (const i of d.invitations) console.log(`  invited\t${i.userId} (by ${i.invitedBy})`);
  }));
  withRoute(rooms.command("topic <room> <text...>").description("set the topic (managers)")).action(act(async (c, room: string, text: string[]) => {
    console.log(showRoom(await c.chat.updateRoom(room, { topic: text.join(" ") })));
  }));
  withRoute(rooms.command("archive <room>").description("make a room read-only (owner)")).action(act(async (c, room: string) => {
    console.log(showRoom(await c.chat.archiveRoom(room)));
  }));
  for (const [verb, what] of [["join", "join an open room"], ["leave", "leave a room"], ["accept", "accept an invitation"], ["decline", "decline an invitation"]] as const) {
    withRoute(rooms.command(`${verb} <room>`).description(what)).action(act(async (c, room: string) => {
      if (verb === "join") await c.chat.join(room);
      else if (verb === "leave") await c.chat.leave(room);
      else if (verb === "accept") await c.chat.accept(room);
      else await c.chat.decline(room);
      console.log(`${verb}: ${room}`);
    }));
  }
  for (const [verb, what] of [["invite", "invite a user"], ["revoke", "revoke an invitation"], ["kick", "remove a member"]] as const) {
    withRoute(rooms.command(`${verb} <room> <user>`).description(what)).action(act(async (c, room: string, user: string) => {
      if (verb === "invite") await c.chat.invite(room, user);
      else if (verb === "revoke") await c.chat.revoke(room, user);
      else await c.chat.kick(room, user);
      console.log(`${verb}: ${user} in ${room}`);
    }));
  }
  withRoute(rooms.command("role <room> <user> <role>").description("set a member's role: member, manager or owner (owner)")).action(act(async (c, room: string, user: string, role: string) => {
    const r = ROLES[role];
    if (!r) throw new UsageError(`role '${role}' must be member, manager or owner`);
    await c.chat.setRole(room, user, r);
    console.log(`${user} is ${role} of ${room}`);
  }));
  withRoute(rooms.command("invitations").description("invitations waiting for you").option("--json")).action(act(async (c) => {
    const list = await c.chat.invitations();
    if (c.json) return printJson(list);
    for (const i of list) console.log(`${i.roomId}\tfrom ${i.invitedBy}`);
  }));
  withRoute(rooms.command("unread").description("unread messages and mentions per room").option("--json")).action(act(async (c) => {
    const list = await c.chat.unread();
    if (c.json) return printJson(list);
    for (const u of list) console.log(`${u.roomId}\t${u.unread} unread\t${u.mentions} mentions`);
  }));

  withRoute(program.command("post <room> <text...>").description("post a message; acknowledged once stored and archived").option("--reply-to <seq>", "answer message seq").option("--json")).action(
    async (room: string, text: string[], o: { replyTo?: string; json?: boolean }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const m = await c.chat.post(room, text.join(" "), { replyTo: o.replyTo ? Number(o.replyTo) : 0 });
        if (o.json) printJson(m);
        else console.log(`posted #${m.seq} in ${room}`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(program.command("history <room>").description("recent messages, newest last").option("--before <seq>", "older than this seq").option("--limit <n>", "how many", "50").option("--json")).action(
    async (room: string, o: { before?: string; limit: string; json?: boolean }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const page = await c.chat.history(room, { beforeSeq: Number(o.before ?? 0), limit: Number(o.limit) });
        if (o.json) return printJson(page);
        for (const m of [...page.messages].reverse()) console.log(formatMessage(m));
        if (page.nextBeforeSeq) console.log(`(older: --before ${page.nextBeforeSeq})`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(program.command("search <query...>").description("full-text search over the rooms you may read").option("--room <room>", "only this room").option("--limit <n>", "how many", "20").option("--json")).action(
    async (query: string[], o: { room?: string; limit: string; json?: boolean }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const hits = await c.chat.search(query.join(" "), { roomId: o.room, limit: Number(o.limit) });
        if (o.json) return printJson(hits);
        for (const m of hits) console.log(`${m.roomId} ${formatMessage(m)}`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(program.command("upload <room> <path>").description("upload a file and post it to the room").option("--text <text>", "message text", "").option("--content-type <type>", "content type (default from the extension)").option("--json")).action(
    async (room: string, path: string, o: { text: string; contentType?: string; json?: boolean }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const att = await uploadFile(c.chat, room, path, { contentType: o.contentType, filesUrl: c.filesUrl });
        const m = await c.chat.post(room, o.text, { attachments: [att] });
        if (o.json) printJson({ message: m, attachment: att });
        else console.log(`uploaded ${att.name} (${att.size} bytes, sha256 ${att.sha256}) as ${att.fileId}; posted #${m.seq}`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(program.command("download <room> <fileId>").description("download a room's file").option("-o, --output <path>", "where to write it (default: its name)")).action(
    async (room: string, fileId: string, o: { output?: string }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        const out = o.output ?? fileId;
        const r = await downloadFile(c.chat, room, fileId, out, { filesUrl: c.filesUrl });
        console.log(`downloaded ${r.name} → ${out} (${r.bytes} bytes, sha256 ${r.sha256})`);
      } finally {
        c.close();
      }
    },
  );
  withRoute(program.command("chat <room>").description("interactive chat: history, live messages, presence, typing (/who, /quit)").option("--history <n>", "messages to show first", "20")).action(
    async (room: string, o: { history: string }, cmd: Command) => {
      const c = chatClient(cmd);
      try {
        await runChatUi(c.chat, c.userId, room, Number(o.history));
      } finally {
        c.close();
      }
    },
  );
}
