// An OTLP/HTTP receiver for tests (http/json): keeps every span posted to /v1/traces, answers
// every export with an empty success.

/** One span as OTLP/JSON carries it (the fields the tests read). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}

/** A received span with its scope and its resource's `service.name`. */
export interface Received {
  scope: string;
  service?: string;
  span: OtlpSpan;
}

/** A running receiver: its base URL (the OTLP endpoint) and what it got. */
export interface OtlpReceiver {
  url: string;
  spans: Received[];
  /** Content types of the trace exports it got. */
  contentTypes: string[];
  close(): Promise<void>;
}

/** Starts a receiver on a free loopback port. */
export function startOtlpReceiver(): OtlpReceiver {
  const spans: Received[] = [];
  const contentTypes: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = await req.text();
    if (new URL(req.url).pathname === "/v1/traces") {
      contentTypes.push(req.headers.get("content-type") ?? "");
      for (const rs of JSON.parse(body).resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a: { key: string }) =>
          a.key === "service.name"
        )?.value?.stringValue;
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? []) spans.push({ scope: ss.scope?.name, service, span });
        }
      }
    }
    return new Response("{}", { headers: { "content-type": "application/json" } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    contentTypes,
    close: () => server.shutdown(),
  };
}

/** The value of a span's attribute. */
export function attr(span: OtlpSpan, key: string): unknown {
  const v = span.attributes?.find((a) => a.key === key)?.value;
  return v && Object.values(v)[0];
}
