/**
 * The chat's handlers, run in the server's worker pool. Workers are sticky: one connection's
 * `onConnect`, messages and `onDisconnect` all run in the same worker, so who sits in which room
 * can be kept right here.
 *
 * Every event goes to the room as JSON: `{ kind: "join" | "message" | "leave", name, text?, at }`.
 *
 * @module
 */

import type { ConnectInfo, DisconnectInfo, ServerContext, WireMessage } from "@wse/engine/server";

const members = new Map<string, { room: string; name: string }>();

/** One line of at most `max` characters, or `fallback` when nothing is left. */
function tidy(value: string | null, max: number, fallback = ""): string {
  return (value ?? "").replace(/\s+/g, " ").trim().slice(0, max) || fallback;
}

function tell(ctx: ServerContext, room: string, event: Record<string, string>): Promise<number> {
  return ctx.server.publish(room, JSON.stringify({ ...event, at: Date.now() }));
}

/** Joins the room named in the WebSocket URL (`/ws?room=lobby&name=ada`). */
export async function onConnect(ctx: ServerContext, info: ConnectInfo): Promise<void> {
  const query = new URL(info.url, "http://chat").searchParams;
  const member = {
    room: tidy(query.get("room"), 32, "lobby"),
    name: tidy(query.get("name"), 32, "guest"),
  };
  members.set(ctx.id, member);
  await ctx.subscribe(member.room);
  await tell(ctx, member.room, { kind: "join", name: member.name });
}

/** A line typed by a member goes to everyone in the room, the sender included. */
export async function onMessage(message: WireMessage, ctx: ServerContext): Promise<void> {
  const member = members.get(ctx.id);
  const text = message.type === "text" ? tidy(message.data, 1000) : "";
  if (member && text) await tell(ctx, member.room, { kind: "message", name: member.name, text });
}

/** The connection is gone (and out of its room): tell the others. */
export async function onDisconnect(info: DisconnectInfo, ctx: ServerContext): Promise<void> {
  const member = members.get(info.id);
  members.delete(info.id);
  if (member) await tell(ctx, member.room, { kind: "leave", name: member.name });
}
