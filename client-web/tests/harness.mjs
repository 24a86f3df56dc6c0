// Helpers shared by the browser tests (e2e.mjs, demo.mjs): child processes whose output is kept
// for diagnostics and killed when the test ends, and polling with a deadline (nothing in these
// tests waits a fixed time).
import { spawn } from "node:child_process";

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
