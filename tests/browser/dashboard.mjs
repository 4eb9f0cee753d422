// Drives the MagicQueue dashboard in Debian's Chromium (/usr/bin/chromium) with playwright-core.
// No browser is downloaded: playwright-core only speaks the DevTools protocol to the system one.
//
//   node dashboard.mjs --base http://127.0.0.1:PORT --queue NAME --screenshot out.png
//                      [--token TOKEN] [--detail-queue NAME]
//
// Steps: open the page (entering the token if the page asks for one), wait until the live event
// stream is connected, push a job to a queue the page has not seen (over the REST API, as any
// producer would), wait for the queue's row to appear, press its Pause button, wait for the row to
// say "paused", open a job's full record, and save a full-page screenshot. Prints one JSON line
// per step; exits non-zero with the reason on any failure.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    base: { type: "string" },
    queue: { type: "string" },
    screenshot: { type: "string" },
    token: { type: "string", default: "" },
    "detail-queue": { type: "string", default: "" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const k of ["base", "queue", "screenshot"]) {
  if (!opt[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}

const STEP_MS = 20000;
const log = (step, extra = {}) => console.log(JSON.stringify({ step, ...extra }));

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (opt.token) headers.Authorization = `Bearer ${opt.token}`;
  const r = await fetch(opt.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const env = await r.json();
  if (!env.ok) throw new Error(`${method} ${path}: ${r.status} ${env.error}`);
  return env.data;
}

const profile = mkdtempSync(join(tmpdir(), "mq-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opt.chromium,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The page's first API call is refused (401) until the token is entered: that is expected.
    if (m.type() === "error" && !(opt.token && m.text().includes("401"))) problems.push(`console: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(opt.base)) problems.push(`request outside the server: ${r.url()}`);
  });

  await page.goto(`${opt.base}/`, { waitUntil: "load", timeout: STEP_MS });
  log("opened");
  if (opt.token) {
    await page.locator("#login:not(.hidden) #token").waitFor({ timeout: STEP_MS });
    await page.fill("#token", opt.token);
    await page.click('#login-form button[type="submit"]');
    await page.locator("#login.hidden").waitFor({ state: "attached", timeout: STEP_MS });
    log("token accepted");
  }
  await page.locator("#live.pill-on").waitFor({ timeout: STEP_MS });
  log("live");

  const rowSel = (name) => `#queues tbody tr[data-queue="${name}"]`;
  if ((await page.locator(rowSel(opt.queue)).count()) !== 0) throw new Error("the queue was there before the push");
  const job = await api("POST", `/queues/${encodeURIComponent(opt.queue)}/jobs`, { data: { from: "browser test" } });
  await page.locator(rowSel(opt.queue)).waitFor({ timeout: STEP_MS });
  log("queue appeared", { job: job.id });

  const stateOf = async () => (await page.locator(`${rowSel(opt.queue)} [data-field="state"]`).textContent()).trim();
  if ((await stateOf()) !== "running") throw new Error(`unexpected state before pausing: ${await stateOf()}`);
  await page.click(`${rowSel(opt.queue)} button[data-action="pause"]`);
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.textContent.trim() === "paused",
    `${rowSel(opt.queue)} [data-field="state"]`,
    { timeout: STEP_MS },
  );
  await page.locator(`${rowSel(opt.queue)} button[data-action="resume"]`).waitFor({ timeout: STEP_MS });
  log("paused on the page");

  // Open a job's full record in the job browser (the richest view for the screenshot).
  const detailQueue = opt["detail-queue"] || opt.queue;
  await page.click(`${rowSel(detailQueue)} button[data-action="jobs"]`);
  const firstJob = page.locator("#jobs tbody tr").first();
  await firstJob.waitFor({ timeout: STEP_MS });
  await firstJob.click();
  await page.locator("#detail h3").waitFor({ timeout: STEP_MS });
  log("job detail shown", { title: (await page.locator("#detail h3").textContent()).trim() });

  // Let the charts collect a few seconds of live traffic before the picture.
  await page.waitForTimeout(3000);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: opt.screenshot, fullPage: true });
  log("screenshot", { path: opt.screenshot });
  if (problems.length) throw new Error(problems.join("; "));
  log("done");
} catch (e) {
  console.error(`FAILED: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
