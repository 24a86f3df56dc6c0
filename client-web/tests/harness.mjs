// Helpers shared by the browser tests (e2e.mjs, transports.mjs, demo.mjs): child processes whose
// output is kept for diagnostics and killed when the test ends, polling with a deadline (nothing
// in these tests waits a fixed time), free ports, quantiles.
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";

/** Every child still running; the tests SIGKILL what is left when they end. */
export const children = new Set();

/** `console.log` with a `[name]` prefix. */
export const logger =
  (name) =>
  (...a) =>
    console.log(`[${name}]`, ...a);

/** Poll `probe` every `intervalMs` until it returns something truthy (returned), or throw. */
export async function waitFor(what, timeoutMs, probe, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Spawn a process and keep its output (`.text`, bounded) and exit status (`.exited`). */
export function start(name, cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...options });
  children.add(child);
  const out = { name, child, text: "", exited: undefined };
  const onData = (d) => {
    out.text += d.toString();
    if (out.text.length > 200_000) out.text = out.text.slice(-100_000);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  child.on("exit", (code, signal) => {
    out.exited = { code, signal };
    children.delete(child);
  });
  child.on("error", (e) => {
    out.text += `\n${name}: ${e.message}`;
    out.exited = { code: -1, signal: null };
    children.delete(child);
  });
  return out;
}

export function stopChild(p, signal = "SIGTERM") {
  if (p && p.exited === undefined) p.child.kill(signal);
}

export async function waitExit(p, timeoutMs) {
  await waitFor(`${p.name} to exit`, timeoutMs, () => p.exited !== undefined);
}

/** The last `n` lines a process printed. */
export function tail(p, n = 30) {
  return p.text.split("\n").slice(-n).join("\n");
}

/** A port the OS just handed out (and took back) for `proto` ("udp" on [::], else TCP on 127.0.0.1). */
export function freePort(proto) {
  return new Promise((ok, fail) => {
    const server = proto === "udp" ? createSocket("udp6") : createServer();
    server.on("error", fail);
    const done = () => {
      const { port } = server.address();
      server.close(() => ok(port));
    };
    if (proto === "udp") server.bind(0, "::", done);
    else server.listen(0, "127.0.0.1", done);
  });
}

/** The `q` quantile (0..1) of `values` (nearest rank; undefined when empty). */
export function quantile(values, q) {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** A page's `window.banyanStats` as plain JSON (null until the page sets it); Playwright or puppeteer. */
export const banyanStats = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats ?? null)));

/** A Playwright page in its own context whose scripts find no `WebTransport` (a browser without it). */
export async function pageWithoutWebTransport(browser) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    delete window.WebTransport;
  });
  return { context, page: await context.newPage() };
}

/**
 * Wait until `page` has decoded `frames` frames and shows a latency; its stats. A failure names
 * the page's stats and `more()` (e.g. a relay's log tail).
 */
export async function decoded(what, page, frames, timeoutMs, more = () => "") {
  return waitFor(`${what}: ${frames} decoded frames`, timeoutMs, async () => {
    const s = await banyanStats(page);
    if (s?.state === "error") throw new Error(`${what}: ${s.lastError}`);
    return s && s.framesDecoded >= frames && s.latencyMs !== undefined ? s : undefined;
  }, 100).catch(async (e) => {
    throw new Error(`${e.message}; stats ${JSON.stringify(await banyanStats(page).catch(() => null))}\n${more()}`);
  });
}

/**
 * Click like on a demo page (Playwright) and post `text` in its chat: the like must be counted on
 * the `likes` track and the comment appear in the chat panel. Returns how long each took (ms).
 */
export async function likeAndComment(page, text) {
  const likes = (await banyanStats(page))?.likes ?? 0;
  let t = Date.now();
  await page.click("#like");
  await waitFor("the like to be counted", 10_000, async () => ((await banyanStats(page))?.likes ?? 0) >= likes + 1, 20);
  const likeMs = Date.now() - t;
  t = Date.now();
  await page.fill("#chat-input", text);
  await page.press("#chat-input", "Enter");
  await waitFor("the comment in the chat panel", 10_000, async () =>
    (await page.locator("#chat-list li.comment").allTextContents()).some((c) => c.includes(text)), 20);
  return { likeMs, commentMs: Date.now() - t, likes: (await banyanStats(page))?.likes };
}

/**
 * The page's `banyanStats.latencyMs`, sampled in the page every 33 ms (about once a frame) for
 * `ms`: the figures do not depend on how fast the test can ask (Playwright or puppeteer page).
 */
export function latencySamples(page, ms) {
  return page.evaluate(
    (ms) =>
      new Promise((resolve) => {
        const out = [];
        const timer = setInterval(() => {
          const v = window.banyanStats?.latencyMs;
          if (typeof v === "number") out.push(v);
        }, 33);
        setTimeout(() => {
          clearInterval(timer);
          resolve(out);
        }, ms);
      }),
    ms,
  );
}
