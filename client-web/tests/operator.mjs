// Stage 8 of the browser e2e (tests/e2e.mjs): the operator page draws the fleet after a flash
// crowd made control spawn relays.
//
// banyan-control with the process spawner (relays of 10 viewers, at most 3 spawned), an origin
// relay of 10, a synthetic publisher, and `banyan-bench flash` bringing 30 viewers in 3 s: the
// origin fills and control spawns edges under it. Control's page (`/`) must then draw the
// broadcast's tree as a picture in which every relay carrying the broadcast is a node and every
// parent link control reports is an edge (checked against `/v1/status`), and graph the last
// minutes with the spawned relays showing. The screenshot is test-results/operator.png.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, logger, start, stopChild, tail, waitExit, waitFor } from "./harness.mjs";

const log = logger("e2e");
const CAPACITY = 10;
const VIEWERS = 30;

/** The stage; `bin(name)` is a workspace binary's path, screenshots go to `results`. */
export async function operatorStage(browser, bin, results) {
  const t0 = Date.now();
  for (const b of ["banyan-control", "banyan-relay", "banyan-publish", "banyan-bench"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} missing: run cargo test --workspace --no-run first`);
  }
  const dir = mkdtempSync(join(tmpdir(), "banyan-operator-e2e-"));
  const port = await freePort("tcp");
  const control = `http://127.0.0.1:${port}`;
  const broadcast = "live/operator";
  const processes = [];
  const page = await browser.newPage();
  try {
    const controlProcess = start("banyan-control", bin("banyan-control"), [
      "--listen", `127.0.0.1:${port}`, "--public-url", control,
      "--spawner", "process", "--relay-binary", bin("banyan-relay"), "--spawn-dir", dir,
      "--spawn-region", "local", "--spawn-capacity-viewers", String(CAPACITY),
      "--spawn-relay-arg=--upstream-insecure", "--spawn-relay-arg=--log=warn",
      "--heartbeat-interval", "200ms", "--heartbeat-expiry", "2s", "--tick", "100ms",
      "--join-rate-halflife", "500ms", "--replicate-lead", "2s", "--spawn-lead", "4s",
      "--idle-cooldown", "60s", "--max-spawned", "3",
    ]);
    processes.push(controlProcess);
    await waitFor("banyan-control to answer /health", 20_000, async () => {
      if (controlProcess.exited) throw new Error(`banyan-control exited: ${tail(controlProcess)}`);
      return (await fetch(`${control}/health`).catch(() => undefined))?.ok;
    });
    const origin = start("origin banyan-relay", bin("banyan-relay"), [
      "--relay-id", "origin", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--dev-cert",
      "--insecure-no-auth", "--public-host", "127.0.0.1", "--region", "local", "--control", control,
      "--capacity-viewers", String(CAPACITY), "--log", "warn",
    ]);
    processes.push(origin);
    const listening = await waitFor("the origin relay to listen", 20_000, () => {
      if (origin.exited) throw new Error(`origin relay exited: ${tail(origin)}`);
      return /^listening: udp \S+:(\d+) /m.exec(origin.text);
    });
    const hash = /certificate sha256: ([0-9a-f]{64})/.exec(origin.text)?.[1];
    const publisher = start("banyan-publish", bin("banyan-publish"), [
      `moqt://127.0.0.1:${listening[1]}/`, "--tls-hash", hash, "--broadcast", broadcast,
      "--synthetic", "--bitrate", "240k", "--fps", "30", "--gop", "30",
    ]);
    processes.push(publisher);
    await waitFor("control to know the broadcast's origin", 20_000, async () => {
      if (publisher.exited) throw new Error(`banyan-publish exited: ${tail(publisher)}`);
      const s = await (await fetch(`${control}/v1/status`)).json();
      return s.broadcasts.some((b) => b.broadcast === broadcast && b.origin === "origin");
    });

    // The crowd stays until the page has been checked (its --watch outlasts the stage).
    const crowd = start("banyan-bench flash", bin("banyan-bench"), [
      "flash", control, "--broadcast", broadcast, "--viewers", String(VIEWERS), "--arrival", "3s", "--watch", "60s",
    ]);
    processes.push(crowd);
    await page.goto(`${control}/`);
    // Done when control reports spawned relays carrying the broadcast under a parent, and the
    // picture shows exactly the reported tree.
    const drawn = await waitFor("the page to draw the tree control reports, spawned relays included", 60_000, async () => {
      if (crowd.exited && crowd.exited.code !== 0) throw new Error(`banyan-bench flash exited: ${tail(crowd)}`);
      const status = await (await fetch(`${control}/v1/status`)).json();
      const b = status.broadcasts.find((x) => x.broadcast === broadcast);
      const parentOf = new Map();
      for (const r of status.relays) {
        const link = r.parents.find((p) => p.namespace === broadcast && p.relay_id);
        if (link) parentOf.set(r.relay_id, link.relay_id);
      }
      const spawned = status.relays.filter((r) => r.spawned && parentOf.has(r.relay_id)).map((r) => r.relay_id);
      if (!b || spawned.length === 0) return undefined;
      const nodes = await page.$$eval(`svg.tree[data-broadcast="${broadcast}"] g.node`, (gs) =>
        gs.map((g) => ({ relay: g.dataset.relay, parent: g.dataset.parent })));
      const edges = await page.$$eval(`svg.tree[data-broadcast="${broadcast}"] path.edge`, (ps) =>
        ps.map((p) => `${p.dataset.parent}->${p.dataset.child}`));
      const want = [...b.relays].sort();
      const got = nodes.map((n) => n.relay).sort();
      if (JSON.stringify(got) !== JSON.stringify(want)) return undefined;
      for (const [child, parent] of parentOf) {
        if (!want.includes(child)) continue;
        if (!edges.includes(`${parent}->${child}`)) return undefined;
        if (nodes.find((n) => n.relay === child)?.parent !== parent) return undefined;
      }
      return { status, spawned, nodes, edges };
    }, 250).catch(async (e) => {
      throw new Error(`${e.message}\ncontrol:\n${tail(controlProcess, 15)}\nbench:\n${tail(crowd, 10)}`);
    });
    // The graphs: five seconds of samples, a spawned relay among them, both lines of the relays graph drawn.
    const graphs = await waitFor("the graphs to show the spawn", 10_000, async () => {
      const h = await (await fetch(`${control}/v1/history`)).json();
      const lines = await page.$$eval('[data-graph="relays"] polyline', (ps) => ps.map((p) => p.getAttribute("points").trim().split(/\s+/).length));
      return h.samples.length >= 5 && h.samples.some((s) => s.spawned > 0) && lines.length === 2 && lines.every((n) => n >= 2)
        ? { samples: h.samples.length, spawned: Math.max(...h.samples.map((s) => s.spawned)) }
        : undefined;
    }, 250);
    const shot = join(results, "operator.png");
    await page.screenshot({ path: shot, fullPage: true });
    const tree = drawn.nodes.map((n) => (n.parent ? `${n.parent} -> ${n.relay}` : `${n.relay} (root)`)).join(", ");
    log(`stage 8 (operator page): ${VIEWERS} viewers over 3 s on relays of ${CAPACITY}: control spawned ${drawn.spawned.length} relay(s) under a parent; the page draws ${drawn.nodes.length} nodes and ${drawn.edges.length} edges, as /v1/status reports: ${tree}; graphs over ${graphs.samples} samples, up to ${graphs.spawned} spawned; screenshot ${shot} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return { nodes: drawn.nodes.length, edges: drawn.edges.length, spawned: drawn.spawned.length, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await page.close().catch(() => {});
    for (const p of processes.reverse()) stopChild(p);
    for (const p of processes) await waitExit(p, 15_000).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
