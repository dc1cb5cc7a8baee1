// BullMQ measured the way tests/benches/engine.rs measures our engine, on the Redis the Rust
// benchmark started (so both sides run on the same machine in the same run):
//   e2e        addBulk of N no-op jobs, one worker process (concurrency 50): jobs/s until all done
//   e2e4       the same with the jobs spread over 4 priorities
//   enqueue    addBulk rate alone
//   latency    one job at a time at 250/s, idle worker: enqueue -> handler start (p50, p99 ms)
// Prints one JSON object per line. Usage: node bench.mjs REDIS_PORT [N]
import { Queue, Worker } from "bullmq";

const port = Number(process.argv[2]);
const n = Number(process.argv[3] ?? 20000);
const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };
const CHUNK = 1000;

function jobs(count, priorities) {
  return Array.from({ length: count }, (_, i) => ({
    name: "noop",
    data: { i },
    opts: {
      removeOnComplete: true,
      removeOnFail: true,
      ...(priorities ? { priority: 1 + (i % 4) } : {}),
    },
  }));
}

async function addAll(queue, all) {
  for (let i = 0; i < all.length; i += CHUNK) {
    await queue.addBulk(all.slice(i, i + CHUNK));
  }
}

async function endToEnd(name, priorities) {
  const queue = new Queue(name, { connection });
  await queue.obliterate({ force: true }).catch(() => {});
  let done = 0;
  let finish;
  const finished = new Promise((r) => (finish = r));
  const worker = new Worker(name, async () => {}, { connection, concurrency: 50 });
  worker.on("completed", () => {
    done += 1;
    if (done === n) finish();
  });
  await worker.waitUntilReady();
  const t0 = process.hrtime.bigint();
  await addAll(queue, jobs(n, priorities));
  await finished;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await worker.close();
  await queue.close();
  return n / secs;
}

async function enqueueRate(name) {
  const queue = new Queue(name, { connection });
  await queue.obliterate({ force: true }).catch(() => {});
  const all = jobs(n, false);
  const t0 = process.hrtime.bigint();
  await addAll(queue, all);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  return n / secs;
}

async function latency(name, count) {
  const queue = new Queue(name, { connection });
  await queue.obliterate({ force: true }).catch(() => {});
  const started = new Map();
  const worker = new Worker(
    name,
    async (job) => {
      started.get(job.data.i)?.(process.hrtime.bigint());
    },
    { connection, concurrency: 50 },
  );
  await worker.waitUntilReady();
  const samples = [];
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, 4)); // ~250/s
    const seen = new Promise((r) => started.set(i, r));
    const t0 = process.hrtime.bigint();
    await queue.add("probe", { i }, { removeOnComplete: true });
    const t1 = await seen;
    samples.push(Number(t1 - t0) / 1e6);
  }
  await worker.close();
  await queue.close();
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length, Math.ceil(p * samples.length)) - 1];
  return { p50: pct(0.5), p99: pct(0.99) };
}

console.log(JSON.stringify({ measure: "enqueue", rate: await enqueueRate("cmp-enqueue") }));
console.log(JSON.stringify({ measure: "e2e", rate: await endToEnd("cmp-e2e", false) }));
console.log(JSON.stringify({ measure: "e2e4", rate: await endToEnd("cmp-e2e4", true) }));
console.log(JSON.stringify({ measure: "latency", ...(await latency("cmp-latency", 1000)) }));
process.exit(0);
