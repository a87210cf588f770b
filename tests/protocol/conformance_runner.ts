/**
 * Runs one conformance case and says what came out, for the test and the doc generator.
 *
 * @module
 */

import { ProtocolConnection, type ProtocolEvent } from "../../src/protocol/connection.ts";
import { HandshakeError, ProtocolError } from "../../src/protocol/errors.ts";
import {
  HttpHeadReader,
  negotiateServer,
  parseResponseHead,
  rejectionResponse,
  validateServerResponse,
} from "../../src/protocol/handshake.ts";
import {
  CASE_KEY,
  type ConformanceCase,
  type Expectation,
  type FramesInput,
} from "./conformance_cases.ts";
import { drain, outgoingFrames, sentCloseCode, summarize } from "./helpers.ts";

/** The outcome of a case. */
export interface CaseResult {
  pass: boolean;
  /** What happened, in the table's words ("close 1002", "101", "events: …"). */
  actual: string;
  /** Why it failed. */
  failure?: string;
}

/** The expectation in the table's words. */
export function describeExpect(e: Expectation): string {
  if ("close" in e) return `close ${e.close}`;
  if ("handshakeError" in e) {
    return `HandshakeError${e.status ? ` (status ${e.status})` : ""}`;
  }
  if ("status" in e) {
    return `HTTP ${e.status}` + (e.protocol ? ` (protocol ${e.protocol})` : "") +
      (e.extensions !== undefined ? ` (extensions "${e.extensions}")` : "");
  }
  if ("handshakeOk" in e) return `accepted${e.deflate ? " with deflate" : ""}`;
  return e.events.length ? `accept: ${e.events.join(", ")}` : "accept: no events";
}

function frameSummary(f: { opcode: number; payload: Uint8Array }): string {
  const name =
    ({ 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong" } as Record<number, string>)[
      f.opcode
    ] ?? `op${f.opcode}`;
  return name === "close" ? `close:${sentCloseCode([f])}` : `${name}:${f.payload.length}`;
}

const LATIN1_SAFE = new TextDecoder();

/**
 * Feeds `bytes` through `receiveRaw`, `chunk` bytes at a time, each copied into one reused read
 * buffer that is scribbled over after every call (as a transport reusing its buffer would), and
 * returns the events in order, data messages turned back into events.
 */
function receiveRawEvents(conn: ProtocolConnection, bytes: Uint8Array, chunk: number) {
  const events: ProtocolEvent[] = [];
  const onData = (text: boolean, payload: Uint8Array) => {
    events.push(...drain(conn)); // control events parsed before this message come first
    events.push(
      text
        ? { type: "text", data: LATIN1_SAFE.decode(payload) }
        : { type: "binary", data: payload.slice() },
    );
  };
  const readBuffer = new Uint8Array(Math.min(chunk, bytes.length));
  for (let i = 0; i < bytes.length; i += chunk) {
    const n = Math.min(chunk, bytes.length - i);
    readBuffer.set(bytes.subarray(i, i + n));
    conn.receiveRaw(readBuffer.subarray(0, n), onData);
    readBuffer.fill(0xee);
  }
  return events;
}

function runFrames(
  input: FramesInput,
  mode: "whole" | "split" | "raw" | "raw-split",
  e: Expectation,
): CaseResult {
  const conn = new ProtocolConnection({
    role: input.role,
    maxMessageSize: input.maxMessageSize,
    deflate: input.deflate,
  });
  let events: ProtocolEvent[] = [];
  try {
    if (mode === "split") {
      for (let i = 0; i < input.bytes.length; i++) conn.receive(input.bytes.slice(i, i + 1));
    } else if (mode === "whole") {
      conn.receive(input.bytes.slice());
    } else {
      events = receiveRawEvents(conn, input.bytes, mode === "raw" ? input.bytes.length : 1);
    }
    if (input.eof) conn.receiveEof();
  } catch (err) {
    return { pass: false, actual: "uncaught exception", failure: String(err) };
  }
  events.push(...drain(conn));
  const errors = events.filter((ev) => ev.type === "error");
  for (const ev of errors) {
    if (!(ev.error instanceof ProtocolError)) {
      return { pass: false, actual: "untyped error", failure: String(ev.error) };
    }
  }
  const sent = outgoingFrames(conn);
  const summary = events.filter((ev) => ev.type !== "error").map(summarize);
  const last = events.at(-1);
  if (last?.type === "error") {
    const code = last.error.closeCode;
    const actual = `close ${code}`;
    if (!("close" in e)) {
      return { pass: false, actual, failure: `unexpected error: ${last.error.message}` };
    }
    if (code !== e.close) return { pass: false, actual, failure: last.error.message };
    if (sentCloseCode(sent) !== code) {
      return { pass: false, actual, failure: "no close frame with that code was queued" };
    }
    if (e.events && summary.join("|") !== e.events.join("|")) {
      return { pass: false, actual, failure: `events before the error: ${summary.join(", ")}` };
    }
    if (conn.state !== "closed" || !conn.shouldCloseTransport) {
      return {
        pass: false,
        actual,
        failure: `state ${conn.state} after the close frame was taken`,
      };
    }
    return { pass: true, actual };
  }
  if (errors.length > 0) {
    return { pass: false, actual: "error not last", failure: "events after an error" };
  }
  const actual = summary.length ? `accept: ${summary.join(", ")}` : "accept: no events";
  if (!("events" in e) || "close" in e) {
    return { pass: false, actual, failure: "expected a protocol error" };
  }
  if (summary.join("|") !== e.events.join("|")) {
    return { pass: false, actual, failure: "wrong events" };
  }
  if (e.sent && sent.map(frameSummary).join("|") !== e.sent.join("|")) {
    return { pass: false, actual, failure: `sent ${sent.map(frameSummary).join(", ")}` };
  }
  return { pass: true, actual };
}

function runRequest(c: ConformanceCase, chunk: number): CaseResult {
  const input = c.input as Extract<ConformanceCase["input"], { kind: "request" }>;
  const e = c.expect;
  const bytes = new TextEncoder().encode(input.raw);
  let status: number;
  let protocol = "";
  let extensions = "";
  try {
    const reader = new HttpHeadReader("request");
    let head;
    try {
      for (let i = 0; i < bytes.length && !head; i += chunk) {
        head = reader.push(bytes.subarray(i, i + chunk));
      }
      if (!head) return { pass: false, actual: "incomplete", failure: "head never completed" };
      const r = negotiateServer(head, {
        protocols: input.protocols,
        deflate: input.deflate ? {} : null,
      });
      if ("reject" in r) {
        status = r.reject.status;
        rejectionResponse(r.reject);
        if (status === 400 && r.reject.body.length === 0) {
          return { pass: false, actual: "400", failure: "400 without a body saying why" };
        }
      } else {
        status = 101;
        protocol = r.protocol;
        extensions = r.extensions;
      }
    } catch (err) {
      if (!(err instanceof HandshakeError) || err.status === undefined) throw err;
      status = err.status;
      rejectionResponse(err);
    }
  } catch (err) {
    return { pass: false, actual: "uncaught exception", failure: String(err) };
  }
  const actual = `HTTP ${status}` + (protocol ? ` (protocol ${protocol})` : "") +
    (status === 101 && extensions ? ` (extensions "${extensions}")` : "");
  if (!("status" in e) || "handshakeError" in e) {
    return { pass: false, actual, failure: "wrong expectation kind" };
  }
  if (status !== e.status) return { pass: false, actual, failure: "wrong status" };
  if (e.protocol !== undefined && protocol !== e.protocol) {
    return { pass: false, actual, failure: "protocol" };
  }
  if (e.extensions !== undefined && extensions !== e.extensions) {
    return { pass: false, actual, failure: `extensions "${extensions}"` };
  }
  return { pass: true, actual };
}

function runResponse(c: ConformanceCase): CaseResult {
  const input = c.input as Extract<ConformanceCase["input"], { kind: "response" }>;
  const e = c.expect;
  let actual: string;
  let status: number | undefined;
  let ok = false;
  let deflate = false;
  try {
    const parsed = parseResponseHead(new TextEncoder().encode(input.raw));
    if (!parsed) return { pass: false, actual: "incomplete", failure: "head never completed" };
    const r = validateServerResponse(parsed.head, {
      key: CASE_KEY,
      protocols: input.protocols,
      deflate: input.deflate ? {} : null,
    });
    ok = true;
    deflate = r.deflate !== null;
    actual = `accepted${deflate ? " with deflate" : ""}`;
  } catch (err) {
    if (!(err instanceof HandshakeError)) {
      return { pass: false, actual: "uncaught exception", failure: String(err) };
    }
    status = err.status;
    actual = `HandshakeError${status ? ` (status ${status})` : ""}`;
  }
  if ("handshakeOk" in e) {
    const pass = ok && (e.deflate ?? false) === deflate;
    return { pass, actual, failure: pass ? undefined : "expected success" };
  }
  if ("handshakeError" in e) {
    const pass = !ok && status === e.status;
    return { pass, actual, failure: pass ? undefined : "expected a HandshakeError" };
  }
  return { pass: false, actual, failure: "wrong expectation kind" };
}

/**
 * Runs a case: frames whole and byte by byte, with `receive` and again with `receiveRaw` from a
 * reused buffer; request heads whole and in 7-byte pieces.
 */
export function runCase(c: ConformanceCase): CaseResult {
  if (c.input.kind === "frames") {
    const whole = runFrames(c.input, "whole", c.expect);
    if (!whole.pass) return whole;
    for (const mode of ["split", "raw", "raw-split"] as const) {
      const r = runFrames(c.input, mode, c.expect);
      if (!r.pass) return { ...r, failure: `${mode}: ${r.failure}` };
    }
    return whole;
  }
  if (c.input.kind === "request") {
    const whole = runRequest(c, Number.MAX_SAFE_INTEGER);
    if (!whole.pass) return whole;
    const split = runRequest(c, c.input.raw.length > 4096 ? 1000 : 7);
    if (!split.pass) return { ...split, failure: `split: ${split.failure}` };
    return whole;
  }
  return runResponse(c);
}
