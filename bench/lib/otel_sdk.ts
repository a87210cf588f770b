/**
 * The OpenTelemetry SDK as the tracing benchmark registers it: a `BasicTracerProvider` with a
 * `BatchSpanProcessor` (what production uses) in front of an exporter that counts and discards,
 * so the figure is wse's instrumentation plus the SDK, not a collector's network round trip.
 */
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";

/** An exporter that counts the spans it gets and drops them. */
export class CountingExporter implements SpanExporter {
  /** Spans exported so far. */
  count = 0;
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    this.count += spans.length;
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A provider with a batch processor and a counting exporter. */
export function sdkProvider(): { provider: BasicTracerProvider; exporter: CountingExporter } {
  const exporter = new CountingExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  return { provider, exporter };
}
