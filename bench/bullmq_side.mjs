// The BullMQ side of `make bench`: the same workloads as MagicQueue's, against the local Redis.
//
// Theory of operation. `python -m bench` starts this script once and talks to it over stdin and
// stdout, one JSON object per line each way, so a workload can be run right after the matching
// MagicQueue run (the machine is noisy: interleaving keeps the two sides under the same weather)
// without paying node's start-up each time. Every command answers one line: the figures of the
// run, or {"error": "..."}.
//
// Every key lives under the prefix given on the command line (default "mqbench"), and `flush`
// deletes exactly those keys (SCAN MATCH prefix:* + UNLINK), never anything else in the Redis.
//
// Figures: ops/s over the timed phase only (set-up such as pre-adding jobs is not timed), the
// latency of every awaited call (p50/p99/p999), this process's CPU (process.cpuUsage), the Redis
// server's CPU (/proc/<pid>/stat of the pid Redis reports in INFO server), and the whole machine's
// busy CPU (/proc/stat), so the report can show where the time went.
//
// Every timed command takes an optional budget_s: its loop stops once that many seconds have
// passed, and the answer's `units` (done) is then below `requested`. A BullMQ that is slow on a
// loaded machine can thus not push the whole bench past its time limit.
//
// Commands (fields besides "op"):
//   seq_push   queue, n                 Queue.add, one at a time
//   batch_push queue, n, batch          Queue.addBulk of `batch` jobs, one call at a time
//   cycle      queue, n                 Queue.add, then Worker.getNextJob + Job.moveToCompleted
//   push_conns queue, n, conns          `conns` Queue objects, each with its own connection
//   drain      queue, n, concurrency    pre-add n jobs; a Worker of `concurrency` completes them
//   getstate   queue, n                 pre-add n jobs; Queue.getJobState of each id
//   preload    queue, n, chunk, budget_s  addBulk up to n jobs in chunks, stopping once budget_s
//                                       has passed (timed; reports Redis memory)
//   flush                               delete every key under the prefix
//   info                                versions and the Redis pid
//   quit
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k, v.join('=')];
  }),
);
const HOST = args.host || '127.0.0.1';
const PORT = Number(args.port || 6379);
const PREFIX = args.prefix || 'mqbench';
const connection = { host: HOST, port: PORT, maxRetriesPerRequest: null };

const admin = new IORedis(connection);

function payload(n) {
  // the same ~35-byte job data as the MagicQueue side
  return { n, to: 'user@example.com' };
}

function nowNs() {
  return process.hrtime.bigint();
}

function clkTck() {
  return 100; // USER_HZ on Linux; /proc reports times in these ticks
}

function procCpuS(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // after ")": state is index 0, utime index 11, stime index 12
    return (Number(rest[11]) + Number(rest[12])) / clkTck();
  } catch {
    return -1;
  }
}

function machineCpuS() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const all = v.reduce((a, b) => a + b, 0);
    return { busy: (all - v[3] - v[4]) / clkTck(), total: all / clkTck() };
  } catch {
    return { busy: -1, total: -1 };
  }
}

let redisPid = -1;

async function redisInfo(section) {
  const text = await admin.info(section);
  const out = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

class Meter {
  // budgetS: a timed loop stops once this many seconds have passed (the figures then cover the
  // jobs done so far, and `units` < `requested` says so)
  constructor(budgetS) {
    this.lat = [];
    this.budgetNs = BigInt(Math.round((budgetS ?? 1e9) * 1e9));
  }
  overBudget() {
    return nowNs() - this.t0 > this.budgetNs;
  }
  start() {
    this.cpu0 = process.cpuUsage();
    this.redis0 = procCpuS(redisPid);
    this.m0 = machineCpuS();
    this.t0 = nowNs();
  }
  stop(units, extra = {}) {
    const secs = Number(nowNs() - this.t0) / 1e9;
    const cpu = process.cpuUsage(this.cpu0);
    const redis1 = procCpuS(redisPid);
    const m1 = machineCpuS();
    const lat = Float64Array.from(this.lat).sort();
    const pct = (p) => (lat.length ? lat[Math.round(p * (lat.length - 1))] : 0);
    return {
      units,
      seconds: secs,
      ops_per_s: units / secs,
      samples: lat.length,
      p50_us: pct(0.5),
      p99_us: pct(0.99),
      p999_us: pct(0.999),
      max_us: lat.length ? lat[lat.length - 1] : 0,
      cpu_self_s: (cpu.user + cpu.system) / 1e6,
      cpu_redis_s: this.redis0 < 0 || redis1 < 0 ? -1 : redis1 - this.redis0,
      machine_busy_s: m1.busy - this.m0.busy,
      machine_total_s: m1.total - this.m0.total,
      ...extra,
    };
  }
  async timed(fn) {
    const t = nowNs();
    const r = await fn();
    this.lat.push(Number(nowNs() - t) / 1000);
    return r;
  }
}

function newQueue(name) {
  return new Queue(name, { connection, prefix: PREFIX });
}

async function addBulkChunks(queue, n, chunk, seq0 = 0, budgetS = Infinity) {
  const ids = [];
  const t0 = nowNs();
  for (let done = 0; done < n; done += chunk) {
    if (Number(nowNs() - t0) / 1e9 > budgetS) break;
    const k = Math.min(chunk, n - done);
    const jobs = [];
    for (let i = 0; i < k; i++) jobs.push({ name: 'j', data: payload(seq0 + done + i) });
    const added = await queue.addBulk(jobs);
    for (const j of added) ids.push(j.id);
  }
  return ids;
}

const ops = {
  async info() {
    const info = await redisInfo('server');
    redisPid = Number(info.process_id || -1);
    const pkg = JSON.parse(
      readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url), 'utf8'),
    );
    return {
      bullmq: pkg.version,
      node: process.version,
      redis: info.redis_version,
      redis_pid: redisPid,
      prefix: PREFIX,
    };
  },

  async seq_push({ queue, n, budget_s: budgetS }) {
    const q = newQueue(queue);
    await q.waitUntilReady();
    const m = new Meter(budgetS);
    m.start();
    let i = 0;
    for (; i < n && !m.overBudget(); i++) await m.timed(() => q.add('j', payload(i)));
    const r = m.stop(i, { requested: n });
    await q.close();
    return r;
  },

  async batch_push({ queue, n, batch, budget_s: budgetS }) {
    const q = newQueue(queue);
    await q.waitUntilReady();
    const m = new Meter(budgetS);
    m.start();
    let done = 0;
    while (done < n && !m.overBudget()) {
      const jobs = [];
      const k = Math.min(batch, n - done);
      for (let i = 0; i < k; i++) jobs.push({ name: 'j', data: payload(done + i) });
      await m.timed(() => q.addBulk(jobs));
      done += k;
    }
    const r = m.stop(done, { requested: n });
    await q.close();
    return r;
  },

  async cycle({ queue, n, budget_s: budgetS }) {
    const q = newQueue(queue);
    const w = new Worker(queue, null, { connection, prefix: PREFIX, autorun: false });
    await q.waitUntilReady();
    await w.waitUntilReady();
    const token = 'bench-token';
    const m = new Meter(budgetS);
    let errors = 0;
    m.start();
    let i = 0;
    for (; i < n && !m.overBudget(); i++) {
      await m.timed(async () => {
        await q.add('j', payload(i));
        const job = await w.getNextJob(token, { block: false });
        if (!job) {
          errors++;
          return;
        }
        await job.moveToCompleted('ok', token, false);
      });
    }
    const r = m.stop(i, { errors, requested: n });
    await w.close();
    await q.close();
    return r;
  },

  async push_conns({ queue, n, conns, budget_s: budgetS }) {
    const qs = [];
    for (let c = 0; c < conns; c++) qs.push(newQueue(`${queue}-${c}`));
    await Promise.all(qs.map((q) => q.waitUntilReady()));
    const m = new Meter(budgetS);
    m.start();
    let done = 0;
    await Promise.all(
      qs.map(async (q, c) => {
        const quota = Math.floor(n / conns) + (c < n % conns ? 1 : 0);
        for (let i = 0; i < quota && !m.overBudget(); i++) {
          await m.timed(() => q.add('j', payload(i)));
          done++;
        }
      }),
    );
    const r = m.stop(done, { requested: n });
    await Promise.all(qs.map((q) => q.close()));
    return r;
  },

  async drain({ queue, n, concurrency, budget_s: budgetS }) {
    const q = newQueue(queue);
    await q.waitUntilReady();
    // the pre-add is untimed but bounded by the same budget; the Worker drains what was added
    const requested = n;
    n = (await addBulkChunks(q, n, 5000, 0, budgetS ?? Infinity)).length;
    let completed = 0;
    let failed = 0;
    let resolveDone;
    const done = new Promise((res) => {
      resolveDone = res;
    });
    const w = new Worker(queue, async () => 'ok', {
      connection,
      prefix: PREFIX,
      concurrency,
      autorun: false,
    });
    w.on('completed', () => {
      completed++;
      if (completed + failed === n) resolveDone();
    });
    w.on('failed', () => {
      failed++;
      if (completed + failed === n) resolveDone();
    });
    await w.waitUntilReady();
    const m = new Meter();
    m.start();
    const running = w.run();
    await done;
    const r = m.stop(completed, { errors: failed, requested });
    await w.close();
    await running;
    await q.close();
    return r;
  },

  async getstate({ queue, n, budget_s: budgetS }) {
    const q = newQueue(queue);
    await q.waitUntilReady();
    const ids = await addBulkChunks(q, n, 1000, 0, budgetS ?? Infinity);
    const m = new Meter(budgetS);
    let errors = 0;
    m.start();
    let done = 0;
    for (const id of ids) {
      if (m.overBudget()) break;
      const st = await m.timed(() => q.getJobState(id));
      if (st !== 'waiting') errors++;
      done++;
    }
    const r = m.stop(done, { errors, requested: n });
    await q.close();
    return r;
  },

  async preload({ queue, n, chunk, budget_s: budgetS }) {
    const q = newQueue(queue);
    await q.waitUntilReady();
    const mem0 = Number((await redisInfo('memory')).used_memory);
    const m = new Meter();
    m.start();
    const ids = await addBulkChunks(q, n, chunk, 1_000_000_000, budgetS ?? Infinity);
    const r = m.stop(ids.length);
    const mem1 = Number((await redisInfo('memory')).used_memory);
    await q.close();
    return {
      ...r,
      redis_used_memory_delta: mem1 - mem0,
      bytes_per_job: (mem1 - mem0) / Math.max(ids.length, 1),
    };
  },

  async flush() {
    const t0 = nowNs();
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 5000);
      cursor = next;
      if (keys.length) deleted += await admin.unlink(...keys);
    } while (cursor !== '0');
    return { deleted, seconds: Number(nowNs() - t0) / 1e9 };
  },
};

async function main() {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply;
    let cmd;
    try {
      cmd = JSON.parse(line);
      if (cmd.op === 'quit') break;
      const fn = ops[cmd.op];
      if (!fn) throw new Error(`unknown op ${cmd.op}`);
      reply = await fn(cmd);
    } catch (e) {
      reply = { error: String(e && e.stack ? e.stack : e) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  }
  await admin.quit();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
