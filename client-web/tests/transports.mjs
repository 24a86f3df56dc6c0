// Stage 5 of the browser e2e (tests/e2e.mjs): every viewer's browser, over both transports.
//
// One system serves every case: banyan-control, an origin and an edge relay (development
// certificates, so their WebSocket listeners are plain ws:// on loopback, each on a TCP port
// picked here), and ffmpeg's H.264 test pattern through banyan-publish into the origin. Pages open
// `/?broadcast=…&control=…`, so control assigns the relay (the edge) and hands out both its
// `webtransport` and `websocket` URLs; the page chooses.
//
//   a. Chromium with WebTransport deleted from the page (an init script): no flag, it must play
//      H.264 over WebSocket from the edge; a like and a comment must come back on their tracks;
//      glass-to-glass p50 and p99 (the overlay's latencyMs, sampled in the page every 33 ms for
//      3 s once 60 frames played) printed
//      and both under 250 ms on loopback (a generous margin: ~65 ms is typical, most of it the
//      jitter buffer's 60 ms target, as in stage 2).
//   b. A relay restart: SIGTERM the edge (GOAWAY, drain), start it again on the same UDP and TCP
//      ports; the WebSocket page of (a), which must not have reconnected before, must reconnect
//      by itself and play again over WebSocket. The page is closed then (one page plays at a
//      time, so the figures are not two decoders' contention).
//   c. Chromium as it is: the race (WebTransport first, WebSocket 500 ms later) must keep
//      WebTransport on loopback; figures printed, same bound.
//   d. Firefox ESR (/usr/bin/firefox-esr through puppeteer-core, WebDriver BiDi; never a
//      downloaded browser): plays over WebTransport (the relay's certificate pinned by
//      serverCertificateHashes), and over WebSocket with `&transport=websocket`; figures
//      printed, same bound.
//
// Each case prints its time; screenshot test-results/websocket.png (the page of a). Environment: FIREFOX (default /usr/bin/firefox-esr).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import {
  banyanStats,
  children,
  decoded,
  freePort,
  latencySamples,
  likeAndComment,
  logger,
  pageWithoutWebTransport,
  quantile,
  start,
  stopChild,
  tail,
  waitExit,
  waitFor,
} from "./harness.mjs";

const log = logger("e2e");
const BOUND_MS = 250;

/**
 * Run stage 5; `chromium` is the e2e's Playwright browser, `bin(name)` a binary's path,
 * `results` the screenshot folder.
 */
export async function transportsStage(chromium, bin, pageBase, results) {
  const firefoxPath = process.env.FIREFOX ?? "/usr/bin/firefox-esr";
  if (!existsSync(firefoxPath)) throw new Error(`${firefoxPath} missing: apt-get install -y firefox-esr`);
  for (const b of ["banyan-control", "banyan-relay", "banyan-publish"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} missing: cargo build -p ${b === "banyan-publish" ? "banyan-publisher" : b}`);
  }
  const t0 = Date.now();
  const system = await startSystem(bin);
  const summary = {};
  let firefox;
  try {
    log(`stage 5 (transports): control, origin and edge relays (ws://) and the publisher up in ${seconds(t0)}`);
    const url = `${pageBase}/?broadcast=${encodeURIComponent(system.broadcast)}&control=${encodeURIComponent(system.control)}`;

    // ---- a: Chromium without WebTransport ----
    let t = Date.now();
    const { context: noWt, page: pageA } = await pageWithoutWebTransport(chromium);
    pageA.on("console", (m) => m.type() === "error" && log("no-WebTransport page:", m.text()));
    await pageA.goto(url);
    const a = await playing("Chromium without WebTransport", pageA, system, "websocket");
    if (await pageA.evaluate(() => "WebTransport" in window)) throw new Error("the init script did not remove WebTransport");
    if (!/^avc[13]\./.test(a.stats.videoCodec)) throw new Error(`expected H.264, got ${a.stats.videoCodec}`);
    const shown = await likeAndComment(pageA, `over WebSocket ${Date.now()}`);
    await pageA.screenshot({ path: join(results, "websocket.png") });
    log(`5a Chromium, no WebTransport: ${describe(a)}; a like counted after ${shown.likeMs} ms, a comment shown after ${shown.commentMs} ms (${seconds(t)})`);
    summary.chromiumWebSocket = { ...a.figures, ...a.where };

    // ---- b: the edge restarts (GOAWAY); the WebSocket page follows (then closes: one page plays at a time) ----
    t = Date.now();
    const before = await banyanStats(pageA);
    // Nothing so far may have cost the WebSocket session (a drop on loopback would be a bug).
    if (before.reconnects !== 0) throw new Error(`the WebSocket page reconnected ${before.reconnects} time(s) before the restart: ${before.lastError}`);
    stopChild(system.edge, "SIGTERM");
    await waitExit(system.edge, 15_000);
    system.edge = await startRelay(bin, "edge", system.ports.edgeUdp, system.ports.edgeWs, system.edgeArgs);
    const moved = await waitFor("the WebSocket page to play again after the edge restarted", 30_000, async () => {
      const s = await banyanStats(pageA);
      return s && s.reconnects > before.reconnects && s.state === "playing" && s.framesDecoded >= before.framesDecoded + 30 ? s : undefined;
    }, 100).catch(async (e) => {
      throw new Error(`${e.message}; stats ${JSON.stringify(await banyanStats(pageA))}\nedge:\n${tail(system.edge)}`);
    });
    if (moved.transport !== "websocket") throw new Error(`after the restart the page plays over ${moved.transport}, not websocket`);
    if (!(moved.latencyMs < BOUND_MS)) throw new Error(`latency after the restart ${moved.latencyMs} ms is not below ${BOUND_MS} ms`);
    log(`5b edge restart (SIGTERM → GOAWAY, same ports): the WebSocket page reconnected ${moved.reconnects - before.reconnects} time(s) and plays again over ${moved.transport} from ${moved.relay}, +${moved.framesDecoded - before.framesDecoded} frames, latency ${moved.latencyMs.toFixed(1)} ms (${seconds(t)})`);
    summary.restart = { reconnects: moved.reconnects - before.reconnects, transport: moved.transport, resumedMs: Date.now() - t };
    await noWt.close();
    // Pages from now on ask control: wait until it hands out the restarted edge's certificate.
    await waitFor("control to report the restarted edge's certificate", 20_000, async () => {
      const r = await fetch(`${system.control}/v1/watch/${system.broadcast}`).catch(() => undefined);
      const body = r?.ok ? await r.json() : undefined;
      return body?.relay_id === "edge" && body.cert_sha256 === system.edge.hash;
    }, 100);

    // ---- c: Chromium as it is (the race) ----
    t = Date.now();
    const pageB = await chromium.newPage();
    await pageB.goto(url);
    const b = await playing("Chromium (race)", pageB, system, "webtransport");
    log(`5c Chromium, WebTransport and WebSocket racing: ${describe(b)} (${seconds(t)})`);
    summary.chromiumWebTransport = { ...b.figures, ...b.where };
    await pageB.close();

    // ---- d: Firefox ESR, WebTransport then forced WebSocket ----
    t = Date.now();
    firefox = await puppeteer.launch({
      browser: "firefox",
      executablePath: firefoxPath,
      headless: true,
      extraPrefsFirefox: { "media.autoplay.default": 0 },
    });
    log(`5d ${await firefox.version()} launched in ${seconds(t)}`);
    for (const [kind, suffix] of [["webtransport", ""], ["websocket", "&transport=websocket"]]) {
      t = Date.now();
      const page = await firefox.newPage();
      page.on("console", (m) => m.type() === "error" && log(`Firefox ${kind} page:`, m.text()));
      await page.goto(url + suffix);
      const c = await playing(`Firefox ESR over ${kind}`, page, system, kind);
      log(`5d Firefox ESR${suffix ? ` (${suffix.slice(1)})` : ""}: ${describe(c)} (${seconds(t)})`);
      summary[kind === "webtransport" ? "firefoxWebTransport" : "firefoxWebSocket"] = { ...c.figures, ...c.where };
      await page.close();
    }
    await firefox.close();
    firefox = undefined;

    summary.seconds = (Date.now() - t0) / 1000;
    return summary;
  } finally {
    await firefox?.close().catch(() => {});
    for (const p of [system.publisher, system.edge, system.origin, system.controlProcess]) stopChild(p);
    system.ffmpeg.kill("SIGTERM");
  }
}

// ---------------------------------------------------------------------------------------------

const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** banyan-control, origin and edge relays with WebSocket listeners, the publisher. */
async function startSystem(bin) {
  const ports = {
    control: await freePort("tcp"),
    originUdp: await freePort("udp"),
    originWs: await freePort("tcp"),
    edgeUdp: await freePort("udp"),
    edgeWs: await freePort("tcp"),
  };
  const control = `http://127.0.0.1:${ports.control}`;
  const system = { ports, control, broadcast: "live/transports" };
  const controlProcess = start("banyan-control", bin("banyan-control"), ["--listen", `127.0.0.1:${ports.control}`, "--public-url", control], {
    env: { ...process.env, BANYAN_CONTROL_SPAWNER: "none" },
  });
  system.controlProcess = controlProcess;
  await waitFor("banyan-control to answer /health", 20_000, async () => {
    if (controlProcess.exited) throw new Error(`banyan-control exited: ${tail(controlProcess)}`);
    return (await fetch(`${control}/health`).catch(() => undefined))?.ok;
  });
  const common = ["--control", control];
  system.origin = await startRelay(bin, "origin", ports.originUdp, ports.originWs, common);
  system.edgeArgs = [...common, "--upstream", `moqt://127.0.0.1:${ports.originUdp}`, "--upstream-insecure"];
  system.edge = await startRelay(bin, "edge", ports.edgeUdp, ports.edgeWs, system.edgeArgs);
  // ffmpeg's test pattern, one fMP4 fragment per frame (as stage 2), into the origin.
  system.ffmpeg = spawn("ffmpeg", [
    "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
    "-c:v", "libx264", "-tune", "zerolatency", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
    "-f", "mp4", "-movflags", "frag_every_frame+empty_moov+default_base_moof", "-",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  children.add(system.ffmpeg);
  system.ffmpeg.on("exit", () => children.delete(system.ffmpeg));
  system.publisher = start("banyan-publish", bin("banyan-publish"), [
    `moqt://127.0.0.1:${ports.originUdp}`, "--broadcast", system.broadcast, "--tls-hash", system.origin.hash,
  ]);
  system.ffmpeg.stdout.pipe(system.publisher.child.stdin);
  system.publisher.child.stdin.on("error", () => {});
  // Control assigns viewers once both relays heartbeated and the origin reports the broadcast.
  const watch = await waitFor("control to assign the edge, with its WebSocket URL", 30_000, async () => {
    if (system.publisher.exited) throw new Error(`banyan-publish exited: ${tail(system.publisher)}`);
    const r = await fetch(`${control}/v1/watch/${system.broadcast}`).catch(() => undefined);
    const body = r?.ok ? await r.json() : undefined;
    return body?.relay_id === "edge" && body.websocket ? body : undefined;
  }, 200).catch((e) => {
    throw new Error(`${e.message}\ncontrol:\n${tail(controlProcess)}\nedge:\n${tail(system.edge)}`);
  });
  system.edgeUrls = { webtransport: watch.webtransport, websocket: watch.websocket };
  log(`stage 5: control assigns ${watch.relay_id}: ${watch.webtransport} and ${watch.websocket}`);
  return system;
}

/** A relay with a development certificate on UDP `udp` and WebSocket (ws://) on TCP `ws`. */
async function startRelay(bin, id, udp, ws, extra) {
  const relay = start(`${id} banyan-relay`, bin("banyan-relay"), [
    "--relay-id", id, "--listen", `127.0.0.1:${udp}`, "--ws-listen", `127.0.0.1:${ws}`, "--http-listen", "127.0.0.1:0",
    "--dev-cert", "--insecure-no-auth", "--drain-timeout", "2s", "--public-host", "127.0.0.1", ...extra,
  ]);
  await waitFor(`the ${id} relay to listen`, 20_000, () => {
    if (relay.exited) throw new Error(`${id} relay exited: ${JSON.stringify(relay.exited)}\n${tail(relay)}`);
    return /^listening: udp /m.test(relay.text);
  });
  relay.hash = /certificate sha256: ([0-9a-f]{64})/.exec(relay.text)?.[1];
  if (!relay.hash) throw new Error(`the ${id} relay printed no certificate hash:\n${tail(relay)}`);
  return relay;
}

/**
 * Wait for 60 decoded frames (two seconds: past the first group, which the player may enter
 * behind live), check the transport and that the page plays from the edge over the URL control
 * gave for it, then sample latencyMs in the page every 33 ms (about once a frame) for 3 s:
 * p50 and p99 must be under 250 ms.
 */
async function playing(what, page, system, transport) {
  const s = await decoded(what, page, 60, 30_000, () => `edge:\n${tail(system.edge, 15)}`);
  const expected = transport === "websocket" ? system.edgeUrls.websocket : system.edgeUrls.webtransport;
  if (s.transport !== transport || s.relay !== expected) {
    throw new Error(`${what} plays over ${s.transport} from ${s.relay}, expected ${transport} from ${expected} (the edge control assigned)`);
  }
  const samples = await latencySamples(page, 3000);
  const last = await banyanStats(page);
  const figures = {
    latencyP50Ms: round(quantile(samples, 0.5)),
    latencyP99Ms: round(quantile(samples, 0.99)),
    samples: samples.length,
    framesDecoded: last.framesDecoded,
    framesDropped: last.framesDropped,
    stalls: last.stalls,
  };
  if (!(figures.latencyP50Ms < BOUND_MS && figures.latencyP99Ms < BOUND_MS)) {
    throw new Error(`${what}: latency p50 ${figures.latencyP50Ms} ms / p99 ${figures.latencyP99Ms} ms is not below ${BOUND_MS} ms; stats ${JSON.stringify(last)}\nedge:\n${tail(system.edge, 30)}`);
  }
  return { stats: last, figures, where: { transport: last.transport, relay: last.relay } };
}

const round = (v) => (v === undefined ? undefined : Math.round(v * 10) / 10);

function describe(r) {
  const f = r.figures;
  return `${r.stats.framesDecoded} frames of ${r.stats.videoCodec} over ${r.where.transport} from ${r.where.relay}, glass-to-glass p50 ${f.latencyP50Ms} ms p99 ${f.latencyP99Ms} ms (${f.samples} samples), dropped ${f.framesDropped}, stalls ${f.stalls}`;
}
