// An in-memory span exporter that keeps spans synchronously (the SDK's InMemorySpanExporter
// answers on a timer, which outlives a test's last span).
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

export class MemoryExporter implements SpanExporter {
  readonly spans: ReadableSpan[] = [];
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    this.spans.push(...spans);
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A provider that records every span in memory, and ways to find them. */
export function memory() {
  const exporter = new MemoryExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const spans = () => exporter.spans;
  const named = (prefix: string) => spans().filter((s) => s.name.startsWith(prefix));
  return { exporter, provider, spans, named };
}
