/**
 * The example's pool worker module. A worker is its own JavaScript realm: it registers its own
 * tracer provider and context manager, as an app does in each worker (with `OTEL_DENO=true` Deno
 * does both by itself). wse runs `onMessage` inside the message's `process` span, so the app's
 * spans below nest under it. Every finished span goes to the main thread, which prints, draws
 * and exports them.
 *
 * @module
 */

import { context, trace } from "@opentelemetry/api";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import type { MessageContext, WireMessage } from "@wse/engine";
import { recorder } from "./spans.ts";

/** The channel the worker's spans travel on. */
export const SPANS_CHANNEL = "wse-example-tracing-spans";

let workerId = "worker";
// Deno's context manager (AsyncLocalStorage-based) keeps the active span across awaits; it is
// there without OTEL_DENO too.
context.setGlobalContextManager(Deno.telemetry.contextManager);
const toMain = new BroadcastChannel(SPANS_CHANNEL); // lives as long as the worker
trace.setGlobalTracerProvider(
  new BasicTracerProvider({
    spanProcessors: [recorder((span) => toMain.postMessage(span), () => workerId)],
  }),
);
const tracer = trace.getTracer("app");

/** A job from the server: `{ "job": n, "text": "..." }`; the app scores it. */
export async function onMessage(message: WireMessage, ctx: MessageContext): Promise<void> {
  workerId = ctx.workerId;
  if (message.type !== "text") return;
  await tracer.startActiveSpan("score job", async (span) => {
    const job = JSON.parse(message.data) as { job: number; text: string };
    span.setAttribute("app.job", job.job);
    const words = job.text.split(/\s+/).length;
    span.setAttribute("app.words", words);
    // an awaited step: its span still nests under "score job" (the context manager)
    await tracer.startActiveSpan("digest", async (inner) => {
      const bytes = new TextEncoder().encode(job.text);
      const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      inner.setAttribute("app.digest", hash[0].toString(16).padStart(2, "0"));
      inner.end();
    });
    span.end();
  });
}
