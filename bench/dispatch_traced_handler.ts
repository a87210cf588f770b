/**
 * The benchmark's worker module with the OpenTelemetry SDK registered in the worker (as an app
 * that traces does): the same handler, and the sampled messages' `process` spans go through a
 * batch processor to a discarding exporter.
 */
import { trace } from "@opentelemetry/api";
import { sdkProvider } from "./lib/otel_sdk.ts";

trace.setGlobalTracerProvider(sdkProvider().provider);

export { onMessage } from "./dispatch_handler.ts";
