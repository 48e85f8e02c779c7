// Closed-loop load for the benchmarks: `requests` GETs (or HEADs) of one URL,
// `concurrency` in flight, after a warm-up; requests/s and latency
// percentiles. Every answer must have the expected status, or the run stops.

/** Requests/s, p50 and p99 (ms) of `requests` requests to `url`. */
export async function load(url, { headers = {}, method = 'GET', requests = 2000, concurrency = 16, warmup = 100, expect = 200 } = {}) {
  const once = async () => {
    const t = performance.now();
    const res = await fetch(url, { method, headers });
    await res.arrayBuffer();
    if (res.status !== expect) throw new Error(`${method} ${url} answered ${res.status}, not ${expect}`);
    return performance.now() - t;
  };
  for (let i = 0; i < warmup; i++) await once();
  const latencies = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < requests) latencies.push(await once());
  }));
  const elapsed = performance.now() - start;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return { rps: (latencies.length / elapsed) * 1000, p50: pct(50), p99: pct(99) };
}
