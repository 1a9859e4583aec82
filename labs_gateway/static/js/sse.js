// Server-sent events over fetch: EventSource cannot POST or send an Authorization header, so the
// stream is read with a ReadableStream reader and split into events here.

/** Yields the `data` of each event (multi-line data joined with "\n"), in order. */
export async function* sseData(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", cancel, { once: true });
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      signal?.throwIfAborted();  // a cancelled reader ends quietly: make Stop an AbortError
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = eventData(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (data !== null) yield data;
      }
    }
    const rest = eventData(buffer);
    if (rest !== null) yield rest;
  } finally {
    signal?.removeEventListener("abort", cancel);
    reader.releaseLock?.();
  }
}

function eventData(block) {
  const lines = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) lines.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return lines.length ? lines.join("\n") : null;
}
