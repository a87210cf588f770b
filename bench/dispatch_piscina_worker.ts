/** (d): piscina's task function, one task per message. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}
export default function (data: Uint8Array): number {
  if (data[5] > 0) busy(data[5]);
  return 0;
}
