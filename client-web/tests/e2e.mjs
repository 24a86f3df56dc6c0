// End-to-end: headless Debian Chromium (playwright-core) plays a real broadcast through a real
// banyan-relay built from this repo.
//
// Stage 1 (transport): banyan-bench's synthetic publisher (no catalog, filler payloads) feeds
//   bench/0 "video"; the page's client API does SETUP/SUBSCRIBE over WebTransport with a pinned
//   certificate hash and must receive >= 60 objects, each with a LOC capture timestamp.
// Stage 1b (WebCodecs): H.264 (avcC) and VP8 frames encoded in the page go through the player's
//   VideoRenderer; all 60 must be decoded and drawn.
// Stage 2 (media): ffmpeg testsrc -> H.264 fMP4 -> banyan-publish -> relay -> demo page: the page
//   must decode >= 60 real H.264 frames, its overlay latency must be < 250 ms on loopback
//   (printed), it must survive a relay restart (same port and certificate), and a screenshot is
//   saved to test-results/.
// Stage 3 (interactions): an edge relay pulls from that relay (the origin); page A watches on the
//   origin, page B and banyan-watch on the edge. Likes clicked in A are counted in B and by
//   banyan-watch, likes clicked in B (summed by the edge, sent up) in A; a gift clicked in B is
//   reported sent once the origin's ledger has it (HTTP totals checked) and shows in A; both pages
//   and banyan-watch show 3 viewers (A, B, banyan-watch: the edge relay is not one); a comment
//   typed in A appears in B's chat panel and one typed in B in A's (same room); B reloaded shows
//   both from the room's history. Cross-page delays are printed.
// Stage 4 (narrow link): a fresh relay gets banyan-impair in front of its UDP port, capping
//   relay -> page at 100 kB/s (800 kbit/s) while banyan-publish --synthetic sends 2 Mbit/s
//   (30 fps, GOP 30). The page plays through the proxy for 8 s without reconnecting, and its
//   counters (groupsSkipped, behindLiveMs p50/p99/max, stalls) are printed next to the relay's
//   banyan_relay_groups_skipped_total (all reasons; the page is its only subscriber). With a
//   relay that skips what the path cannot carry (it has --latency-budget) the page must skip
//   groups (groupsSkipped > 0), stay near live (behindLiveP99Ms <= 3000, the issue's generous
//   CI bound; the target is 2 GOP) and agree with the relay's count (equal at some moment
//   within 3 s, else within 2: see `compareSkips`). An
//   older relay keeps sending the backlog in order, so the page cannot skip and falls behind:
//   those three checks are then reported as not asserted.
// Stage 5 (transports, tests/transports.mjs): control, an origin and an edge relay with WebSocket
//   listeners; Chromium without WebTransport plays, likes and chats over WebSocket from the edge
//   control assigned, Chromium as it is keeps WebTransport, Firefox ESR plays over WebTransport
//   and (forced) over WebSocket, and the WebSocket page survives an edge restart; glass-to-glass
//   p50/p99 printed per browser and transport, all under 250 ms.
// Stage 6 (go live): a second headless Chromium with a fake camera and microphone
//   (--use-fake-device-for-media-stream --use-fake-ui-for-media-stream) opens publish.html
//   against an origin relay of its own and goes live (WebCodecs H.264 or its fallback, Opus, LOC, MSF
//   catalog, PUBLISH_NAMESPACE). The viewer page (index.html) and banyan-watch (writing fMP4,
//   then probed by ffprobe for the codec and decodable frames) receive it. Glass-to-glass from the
//   publishing tab's capture stamp to the viewer page (its latencyMs, sampled every 33 ms for 5 s)
//   and to banyan-watch (its summary's latency_ms) printed as p50/p90/p99; both p50 must be under
//   250 ms on loopback (p99 is printed, not asserted: software encoding on a shared CI core has
//   outliers). The stage's relay then restarts (same port): the publishing tab reconnects and
//   the viewer page plays again. Stop on the page ends the broadcast: banyan-watch exits on its own.
// Stage 7 (RTMP ingest, tests/ingest.mjs): ffmpeg pushes H.264 + AAC over RTMP to banyan-ingest,
//   which publishes into an origin relay of its own; the viewer page decodes >= 60 frames and AAC
//   audio, and its gateway-to-screen latency p50 must be under 250 ms (p90/p99 printed).
// Stage 8 (operator page, tests/operator.mjs): control with the process spawner, an origin of 10
//   viewers and 30 bench viewers in 3 s; control's page must draw the broadcast's tree with every
//   relay carrying it as a node and every parent link control reports as an edge, spawned relays
//   included, and graph the spawn (screenshot test-results/operator.png).
// Stage 9 (adaptive bitrate, tests/abr.mjs): banyan-publish --ladder (lavfi test source, 360p at
//   500 kbit/s + 180p at 200 kbit/s, aligned keyframes, one group a second) into an origin, an
//   edge pulling it, and banyan-impair between the edge and the page: with relay -> page capped at
//   560 kbit/s the page moves down to the low rendition within 10 s and stays there 4 s, with the
//   cap lifted it moves back up within 20 s; no stall longer than one GOP (1 s), no reconnect;
//   the timeline is printed.
//
// Nothing waits a fixed time: every step polls a condition with a deadline. Ports are all
// chosen by the OS. Run with `npm run e2e` (builds the page first). Environment:
//   BANYAN_TARGET_DIR   cargo target dir (default ../target), binaries from `debug/`
//   CHROMIUM            browser path (default /usr/bin/chromium)
//   FIREFOX             browser path (default /usr/bin/firefox-esr)
//   BANYAN_E2E_ALLOW_MISSING_PUBLISHER=1  pass with stage 2 reported as NOT RUN when
//                       banyan-publish is not built yet (default: fail)
//   BANYAN_E2E_ONLY=narrow  run stage 4 alone (while working on the player's skipping);
//                       BANYAN_E2E_ONLY=transports  stage 5 alone
//                       BANYAN_E2E_ONLY=golive  stage 6 alone
//                       BANYAN_E2E_ONLY=ingest  stage 7 alone
//                       BANYAN_E2E_ONLY=operator  stage 8 alone
//                       BANYAN_E2E_ONLY=abr  stage 9 alone
//   BANYAN_GOLIVE_CODEC=vp8  stage 6 publishes this codec (the publish page's &codec=) instead of
//                       its first choice, H.264
import { spawn, execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { loadavg, tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { children, decoded, latencySamples, logger, quantile, start, stopChild, tail, waitExit, waitFor } from "./harness.mjs";
import { transportsStage } from "./transports.mjs";
import { ingestStage } from "./ingest.mjs";
import { operatorStage } from "./operator.mjs";
import { abrStage } from "./abr.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const repo = resolve(pkg, "..");
const target = process.env.BANYAN_TARGET_DIR ?? join(repo, "target");
const bin = (name) => join(target, "debug", name);
const results = join(pkg, "test-results");
mkdirSync(results, { recursive: true });

const log = logger("e2e");

// ---------------------------------------------------------------------------------------------
// helpers

/** A short-lived ECDSA P-256 certificate (browser-acceptable: <= 14 days) and its DER SHA-256. */
function mintCert(dir) {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "10", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
  ], { stdio: "ignore" });
  const der = new X509Certificate(readFileSync(cert)).raw;
  return { cert, key, hash: createHash("sha256").update(der).digest("hex") };
}

async function startRelay(tls, listen = "[::]:0", extra = [], name = "banyan-relay") {
  const relay = start(name, bin("banyan-relay"), [
    "--listen", listen, "--http-listen", "127.0.0.1:0", "--tls-cert", tls.cert, "--tls-key", tls.key,
    "--insecure-no-auth", "--drain-timeout", "2s", ...extra,
  ]);
  const line = await waitFor("relay to listen", 20_000, () => {
    if (relay.exited) throw new Error(`relay exited: ${JSON.stringify(relay.exited)}\n${tail(relay)}`);
    return /listening: udp (\S+) http (\S+)/.exec(relay.text);
  });
  const port = Number(/:(\d+)$/.exec(line[1])[1]);
  return { relay, port, http: line[2] };
}

function serveDist() {
  const root = join(pkg, "dist");
  if (!existsSync(join(root, "index.html"))) throw new Error("dist/ is missing: run `npm run build` first");
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    let file = join(root, path === "/" ? "index.html" : path);
    if (!file.startsWith(root) || !existsSync(file) || statSync(file).isDirectory()) file = join(root, "index.html");
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

// ---------------------------------------------------------------------------------------------

/** Sum of a Prometheus counter's samples (all label sets) in `text`; undefined when absent. */
function counter(text, name) {
  let sum;
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`).exec(line);
    if (m) sum = (sum ?? 0) + Number(m[1]);
  }
  return sum;
}

/**
 * Page vs relay skipped groups, sampled together every 100 ms for up to 3 s until they are
 * equal. They are out of step by one most of the time: the page gives up on an incomplete group
 * when the newer group's keyframe is due, the relay resets it once the latency budget (1 GOP)
 * plus a round trip has passed since the newer group began, a few hundred ms later (the relay
 * catches up, then the page skips the next one). Without a moment of equality the counts must
 * still be within 2: the page also counts groups its jitter buffer dropped as too late though the
 * relay delivered them, and groups it stopped reading itself (older than the newest two).
 */
async function compareSkips(pageSkips, relaySkips) {
  const t0 = Date.now();
  let last;
  for (;;) {
    const [page, relay] = await Promise.all([pageSkips(), relaySkips()]);
    last = { page, relay };
    if (page === relay) return { ...last, equalAfterMs: Date.now() - t0 };
    if (Date.now() - t0 > 3000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (Math.abs(last.page - last.relay) > 2) {
    throw new Error(`page skipped ${last.page} groups, the relay counted ${last.relay}: more than 2 apart, and never equal in 3 s`);
  }
  return { ...last, equalAfterMs: undefined };
}

// ---- stage 4: a link narrower than the stream ----
async function narrowLinkStage(browser, tls, pageBase) {
  const t0 = Date.now();
  if (!existsSync(bin("banyan-impair"))) throw new Error(`${bin("banyan-impair")} missing: cargo build -p banyan-tests`);
  const { relay, port, http } = await startRelay(tls, "[::]:0", [], "narrow-link banyan-relay");
  const hasBudget = /--latency-budget/.test(execFileSync(bin("banyan-relay"), ["--help"]).toString());
  // Relay -> page capped at 100 kB/s (800 kbit/s), the stream is 2 Mbit/s.
  const impair = start("banyan-impair", bin("banyan-impair"), [
    "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${port}`, "--s2c", "rate=100k",
  ]);
  const proxyLine = await waitFor("banyan-impair to listen", 10_000, () => {
    if (impair.exited) throw new Error(`banyan-impair exited: ${tail(impair)}`);
    return /banyan-impair: (\S+) ->/.exec(impair.text);
  });
  const proxyPort = Number(/:(\d+)$/.exec(proxyLine[1])[1]);
  const broadcast = "live/narrow";
  const publisher = start("banyan-publish (synthetic)", bin("banyan-publish"), [
    `moqt://127.0.0.1:${port}`, "--broadcast", broadcast, "--tls-hash", tls.hash,
    "--synthetic", "--bitrate", "2M", "--fps", "30", "--gop", "30", "--duration", "60s",
  ]);
  const page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && log("narrow page:", m.text()));
  try {
    const url = `${pageBase}/?relay=${encodeURIComponent(`https://127.0.0.1:${proxyPort}/`)}&hash=${tls.hash}&broadcast=${encodeURIComponent(broadcast)}`;
    await page.goto(url);
    const stats = () => page.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats ?? null)));
    const first = await waitFor("the page to play through the 100 kB/s link", 20_000, async () => {
      if (publisher.exited) throw new Error(`banyan-publish exited: ${tail(publisher)}`);
      const s = await stats();
      return s && s.state === "playing" && s.framesDecoded > 0 ? s : undefined;
    }, 100).catch(async (e) => {
      throw new Error(`${e.message}; stats ${JSON.stringify(await stats())}\nrelay:\n${tail(relay)}\nimpair:\n${tail(impair, 5)}`);
    });
    const playingAt = Date.now();
    // Eight seconds of playback over the narrow link (polled, so a failure shows at once).
    const s = await waitFor("8 s of playback over the narrow link", 15_000, async () => {
      const s = await stats();
      if (s?.state !== "playing" && s?.reconnects > first.reconnects) throw new Error(`the page reconnected: ${JSON.stringify(s)}`);
      return Date.now() - playingAt >= 8000 ? s : undefined;
    }, 250);
    const summary = {};
    const relaySkips = async () => counter(await (await fetch(`http://${http}/metrics`)).text(), "banyan_relay_groups_skipped_total");
    const relaySkipped = await relaySkips();
    const impaired = impair.text.trim().split("\n").pop();
    log(`stage 4 (narrow link, relay->page 100 kB/s, stream 2 Mbit/s): decoded ${s.framesDecoded} frames, dropped ${s.framesDropped}, groups skipped ${s.groupsSkipped} (relay counted ${relaySkipped ?? "n/a"}), behind live now ${s.behindLiveMs.toFixed(0)} ms, p50 ${s.behindLiveP50Ms.toFixed(0)} ms, p99 ${s.behindLiveP99Ms.toFixed(0)} ms, max ${s.behindLiveMaxMs.toFixed(0)} ms, stalls ${s.stalls} (${s.stallMs.toFixed(0)} ms), reconnects ${s.reconnects}; relay ${hasBudget ? "has" : "has no"} --latency-budget`);
    log(`impair: ${impaired}`);
    await page.screenshot({ path: join(results, "narrow-link.png") });
    if (s.reconnects !== first.reconnects) throw new Error(`the page reconnected over the narrow link: ${JSON.stringify(s)}`);
    for (const k of ["groupsSkipped", "behindLiveMs", "behindLiveP50Ms", "behindLiveP99Ms", "behindLiveMaxMs", "stalls", "stallMs"]) {
      if (typeof s[k] !== "number") throw new Error(`banyanStats.${k} is ${JSON.stringify(s[k])}, not a number`);
    }
    // The overlay shows the same figures.
    const overlay = (await page.textContent("#overlay")) ?? "";
    if (!/behind\s+\d+ ms/.test(overlay) || !/groups skipped \d+/.test(overlay) || !/stalls\s+\d+/.test(overlay)) {
      throw new Error(`the overlay lacks behind-live, groups skipped or stalls:\n${overlay}`);
    }
    if (relaySkipped === undefined) throw new Error("the relay's /metrics has no banyan_relay_groups_skipped_total");
    if (hasBudget) {
      if (!(s.groupsSkipped > 0)) throw new Error(`no group skipped over a link narrower than the stream: ${JSON.stringify(s)}`);
      if (!(s.behindLiveP99Ms <= 3000)) throw new Error(`behind live p99 ${s.behindLiveP99Ms} ms > 3000 ms: ${JSON.stringify(s)}`);
      const agreed = await compareSkips(async () => (await stats()).groupsSkipped, relaySkips);
      log(agreed.equalAfterMs === undefined
        ? `stage 4: page ${agreed.page} and relay ${agreed.relay} skipped groups never equal within 3 s (within 2: accepted)`
        : `stage 4: page and relay skipped-group counts equal (${agreed.page}) ${agreed.equalAfterMs} ms after the 8 s mark`);
      summary.skipsCompared = agreed;
    } else {
      log("stage 4: groupsSkipped > 0, behindLiveP99Ms <= 3000 and page = relay skips NOT ASSERTED: this relay has no --latency-budget, so it cannot skip a backlog held in the transport");
    }
    return {
      ...summary,
      asserted: hasBudget,
      framesDecoded: s.framesDecoded,
      groupsSkipped: s.groupsSkipped,
      relayGroupsSkipped: relaySkipped,
      behindLiveP50Ms: s.behindLiveP50Ms,
      behindLiveP99Ms: s.behindLiveP99Ms,
      behindLiveMaxMs: s.behindLiveMaxMs,
      stalls: s.stalls,
      stallMs: s.stallMs,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    await page.close();
    stopChild(publisher, "SIGINT");
    stopChild(impair);
    stopChild(relay);
  }
}

// ---- stage 6: go live from a browser tab ----

/** Latency budget on loopback for the published stream (p50, ms), viewer page and banyan-watch. */
const GO_LIVE_P50_BUDGET_MS = 250;

async function goLiveStage(executablePath, tls, pageBase) {
  const t0 = Date.now();
  if (!existsSync(bin("banyan-watch"))) throw new Error(`${bin("banyan-watch")} missing: cargo build -p banyan-publisher`);
  const dir = mkdtempSync(join(tmpdir(), "banyan-golive-"));
  // An origin relay of its own (the same auth settings as the others), restarted mid-stage.
  let { relay, port } = await startRelay(tls, "[::]:0", [], "go-live banyan-relay");
  const broadcast = "live/golive";
  const relayUrl = `https://127.0.0.1:${port}/`;
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
  });
  const mp4 = join(dir, "golive.mp4");
  let watcher;
  try {
    const publisher = await browser.newPage();
    publisher.on("console", (m) => ["error", "warning"].includes(m.type()) && log("publish page:", m.text()));
    const pubStats = () => publisher.evaluate(() => JSON.parse(JSON.stringify(window.banyanPublishStats ?? null)));
    const codec = process.env.BANYAN_GOLIVE_CODEC ? `&codec=${encodeURIComponent(process.env.BANYAN_GOLIVE_CODEC)}` : "";
    // 640x360 as stage 2's ffmpeg source: software encoding and decoding share two CI cores.
    await publisher.goto(`${pageBase}/publish.html?relay=${encodeURIComponent(relayUrl)}&hash=${tls.hash}&broadcast=${encodeURIComponent(broadcast)}&size=640x360${codec}`);
    const encoders = await publisher.evaluate(async () => {
      const out = {};
      for (const codec of ["avc1.42e01f", "vp8", "vp09.00.10.08"]) {
        const config = { codec, width: 1280, height: 720, bitrate: 2_500_000, latencyMode: "realtime" };
        out[codec] = (await VideoEncoder.isConfigSupported(config)).supported;
      }
      out.opus = (await AudioEncoder.isConfigSupported({ codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: 64000 })).supported;
      return out;
    });
    log(`stage 6: this Chromium's encoders (isConfigSupported at 1280x720): ${JSON.stringify(encoders)}; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
    await publisher.click("#live");
    const live = await waitFor("the publish page to go live", 15_000, async () => {
      const s = await pubStats();
      if (s?.state === "error") throw new Error(`publish page: ${s.lastError}`);
      return s?.state === "live" && s.framesEncoded > 0 ? s : undefined;
    }, 100).catch(async (e) => {
      throw new Error(`${e.message}; stats ${JSON.stringify(await pubStats())}`);
    });
    log(`stage 6 (go live): publishing ${live.videoCodec} ${live.width}x${live.height} over ${live.transport}${live.codecNote ? ` (${live.codecNote})` : ""}`);
    // banyan-watch writes what it receives as fMP4 (its muxer reads the catalog's codec
    // configuration; it has no VP8 sample entry, so VP8 is received but not written) and exits
    // when the broadcast ends.
    const muxed = !live.videoCodec.startsWith("vp8");
    watcher = start("banyan-watch (go live)", bin("banyan-watch"), [
      `moqt://127.0.0.1:${port}`, "--broadcast", broadcast, "--tls-hash", tls.hash, "--output", muxed ? mp4 : "none",
    ]);
    const viewer = await browser.newPage();
    viewer.on("console", (m) => m.type() === "error" && log("viewer page:", m.text()));
    const viewerHref = await publisher.getAttribute("#viewer", "href");
    await viewer.goto(new URL(viewerHref, `${pageBase}/publish.html`).href);
    const first = await decoded("viewer page of the published tab", viewer, 30, 20_000, () => `publisher: ${JSON.stringify(live)}`);
    await waitFor("banyan-watch to receive media", 15_000, () => {
      if (watcher.exited) throw new Error(`banyan-watch exited: ${tail(watcher)}`);
      return /watch: objects [1-9]/.test(watcher.text);
    }, 100);
    const samples = await latencySamples(viewer, 5000);
    const viewerStats = await viewer.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats)));
    const sent = await pubStats();
    // The relay restarts (SIGTERM: GOAWAY, drain; a new process on the same port): the publishing
    // tab reconnects and announces again by itself, the viewer page resumes.
    const restartedAt = Date.now();
    stopChild(relay, "SIGTERM");
    await waitExit(relay, 15_000);
    ({ relay } = await startRelay(tls, `[::]:${port}`, [], "go-live banyan-relay (restarted)"));
    const resumed = await waitFor("the viewer page to play the republished broadcast", 30_000, async () => {
      const [p, v] = [await pubStats(), await viewer.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats)))];
      return p?.state === "live" && p.reconnects >= 1 && v.reconnects > viewerStats.reconnects && v.framesDecoded >= viewerStats.framesDecoded + 30 ? { p, v } : undefined;
    }, 100).catch(async (e) => {
      throw new Error(`${e.message}; publisher ${JSON.stringify(await pubStats())}\nrelay:\n${tail(relay)}`);
    });
    const resumedMs = Date.now() - restartedAt;
    log(`stage 6: relay restart: the publishing tab reconnected (${resumed.p.reconnects}) and the viewer page played +${resumed.v.framesDecoded - viewerStats.framesDecoded} frames within ${(resumedMs / 1000).toFixed(1)} s of SIGTERM, latency ${resumed.v.latencyMs?.toFixed(1)} ms`);
    // Stop on the page: the complete catalog and PUBLISH_DONE end the broadcast for banyan-watch.
    await publisher.click("#live");
    const stopped = await waitFor("the publish page to stop", 10_000, async () => {
      const s = await pubStats();
      return s?.state === "stopped" ? s : undefined;
    }, 50);
    await waitExit(watcher, 15_000).catch((e) => {
      throw new Error(`${e.message}: banyan-watch did not see the broadcast end after Stop\n${tail(watcher)}`);
    });
    const summary = JSON.parse(watcher.text.trim().split("\n").filter((l) => l.startsWith("{")).pop() ?? "{}");
    const probe = muxed ? JSON.parse(execFileSync("ffprobe", [
      "-v", "error", "-count_frames", "-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", mp4,
    ]).toString()) : { streams: [] };
    const probed = Object.fromEntries((probe.streams ?? []).map((st) => [st.codec_type, st]));
    const pct = (v) => ({ p50: quantile(v, 0.5), p90: quantile(v, 0.9), p99: quantile(v, 0.99), max: quantile(v, 1) });
    const viewerLatency = pct(samples);
    const fmt = (d) => `p50 ${d.p50?.toFixed(1)} ms, p90 ${d.p90?.toFixed(1)} ms, p99 ${d.p99?.toFixed(1)} ms, max ${d.max?.toFixed(1)} ms`;
    log(`stage 6: publisher sent ${sent.framesSent} of ${sent.framesEncoded} encoded video frames (${sent.framesCaptured} captured, ${sent.framesDropped} dropped at the encoder queue, max queue ${sent.maxEncodeQueue}), ${sent.audioFramesEncoded} audio frames, ${sent.groups} groups (${sent.groupsAbandoned} abandoned), ${sent.bitrateKbps} kbit/s`);
    log(`stage 6: viewer page decoded ${viewerStats.framesDecoded} frames (${viewerStats.videoCodec} ${viewerStats.width}x${viewerStats.height}, ${viewerStats.audioFramesDecoded} audio frames, dropped ${viewerStats.framesDropped}, groups skipped ${viewerStats.groupsSkipped}); glass-to-glass publishing tab -> viewer page over ${samples.length} samples: ${fmt(viewerLatency)}`);
    log(`stage 6: banyan-watch ${summary.objects} objects in ${summary.groups} groups (tracks ${Object.entries(summary.tracks ?? {}).map(([k, v]) => `${k} ${v.objects}`).join(", ")}), gaps ${summary.gaps}, skipped ${summary.groups_skipped}; publishing tab -> banyan-watch latency over ${summary.latency_ms?.samples} objects: ${fmt(summary.latency_ms ?? {})}`);
    if (muxed) log(`stage 6: ffprobe of banyan-watch's fMP4: video ${probed.video?.codec_name} ${probed.video?.width}x${probed.video?.height} ${probed.video?.nb_read_frames} frames decoded, audio ${probed.audio?.codec_name} ${probed.audio?.nb_read_frames} frames; Stop ended the broadcast (banyan-watch exited ${JSON.stringify(watcher.exited)})`);
    if (!(first.framesDecoded > 0)) throw new Error("the viewer page decoded nothing");
    if (!(summary.objects > 0) || !(summary.tracks?.video?.objects > 0)) throw new Error(`banyan-watch received no video: ${JSON.stringify(summary)}`);
    if (muxed) {
      if (!(Number(probed.video?.nb_read_frames) > 0)) throw new Error(`ffprobe decoded no video frame from banyan-watch's output: ${JSON.stringify(probe)}`);
      const expected = sent.videoCodec.startsWith("avc1") ? "h264" : "vp9";
      if (probed.video.codec_name !== expected) throw new Error(`ffprobe says ${probed.video.codec_name}, the publisher sent ${sent.videoCodec}`);
    } else {
      log("stage 6: VP8 is not written to MP4 by banyan-watch: ffprobe not run");
    }
    if (!(viewerLatency.p50 < GO_LIVE_P50_BUDGET_MS)) throw new Error(`viewer page glass-to-glass p50 ${viewerLatency.p50} ms is not under ${GO_LIVE_P50_BUDGET_MS} ms`);
    if (!(summary.latency_ms?.p50 < GO_LIVE_P50_BUDGET_MS)) throw new Error(`banyan-watch latency p50 ${summary.latency_ms?.p50} ms is not under ${GO_LIVE_P50_BUDGET_MS} ms`);
    await viewer.screenshot({ path: join(results, "golive-viewer.png") });
    await publisher.screenshot({ path: join(results, "golive-publisher.png") });
    return {
      encoders,
      videoCodec: sent.videoCodec,
      codecNote: sent.codecNote,
      transport: sent.transport,
      framesSent: sent.framesSent,
      framesDropped: sent.framesDropped,
      groupsAbandoned: stopped.groupsAbandoned,
      publisherReconnects: stopped.reconnects,
      restartResumedMs: resumedMs,
      viewerFramesDecoded: viewerStats.framesDecoded,
      viewerLatencyMs: viewerLatency,
      watchObjects: summary.objects,
      watchLatencyMs: { p50: summary.latency_ms?.p50, p90: summary.latency_ms?.p90, p99: summary.latency_ms?.p99 },
      ffprobeVideo: probed.video ? `${probed.video.codec_name} ${probed.video.nb_read_frames} frames` : "not muxed",
      ffprobeAudio: probed.audio ? `${probed.audio.codec_name} ${probed.audio.nb_read_frames} frames` : "none",
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    stopChild(watcher);
    await browser.close();
    stopChild(relay);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  for (const b of ["banyan-relay", "banyan-bench"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} missing: cargo build -p ${b === "banyan-relay" ? "banyan-relay" : "banyan-bench"}`);
  }
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new Error(`${executablePath} missing: apt-get install -y chromium`);

  const dir = mkdtempSync(join(tmpdir(), "banyan-e2e-"));
  const tls = mintCert(dir);
  log(`certificate sha256 ${tls.hash}`);
  // The origin keeps a gift ledger (stage 3 sends a gift); it survives the restart.
  const originArgs = ["--gift-ledger", join(dir, "gifts.sqlite")];
  let { relay, port, http: originHttp } = await startRelay(tls, "[::]:0", originArgs);
  log(`relay on udp port ${port}`);
  const server = await serveDist();
  const pageBase = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
  });
  const summary = {};
  let edgeRelay;
  try {
    if (process.env.BANYAN_E2E_ONLY === "narrow") {
      summary.narrowLink = await narrowLinkStage(browser, tls, pageBase);
      return summary;
    }
    if (process.env.BANYAN_E2E_ONLY === "golive") {
      summary.goLive = await goLiveStage(executablePath, tls, pageBase);
      return summary;
    }
    if (process.env.BANYAN_E2E_ONLY === "ingest") {
      summary.ingest = await ingestStage(browser, bin, tls, pageBase, startRelay);
      return summary;
    }
    if (process.env.BANYAN_E2E_ONLY === "operator") {
      summary.operator = await operatorStage(browser, bin, results);
      return summary;
    }
    if (process.env.BANYAN_E2E_ONLY === "abr") {
      summary.abr = await abrStage(browser, bin, tls, pageBase, startRelay);
      return summary;
    }
    if (process.env.BANYAN_E2E_ONLY === "transports") {
      summary.transports = await transportsStage(browser, bin, pageBase, results);
      return summary;
    }
    // ---- stage 1: transport against the synthetic publisher ----
    const bench = start("banyan-bench", bin("banyan-bench"), [
      `moqt://127.0.0.1:${port}`, "--tls-hash", tls.hash, "--subscribers", "1", "--fps", "30",
      "--object-size", "2KB", "--duration", "120s", "--ramp-up", "0s",
    ]);
    const page = await browser.newPage();
    page.on("console", (m) => m.type() === "error" && log("page:", m.text()));
    await page.goto(`${pageBase}/?probe=1`);
    const relayUrl = `https://127.0.0.1:${port}/`;
    const probe = await page.evaluate(
      async ({ relayUrl, hash }) => {
        const banyan = window.banyan;
        let session;
        for (let attempt = 0; ; attempt++) {
          try {
            session = await banyan.connect({ relay: relayUrl, hash });
            break;
          } catch (e) {
            if (attempt > 50) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        let sub;
        for (let attempt = 0; ; attempt++) {
          try {
            sub = await session.subscribe("bench/0", "video");
            break;
          } catch (e) {
            if (attempt > 50) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        const latencies = [];
        let objects = 0;
        const groups = new Set();
        await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${objects} objects`)), 20000);
          sub.onObject = (o) => {
            const ts = o.properties.find((p) => p.key === 0x10);
            if (!ts) return reject(new Error("object without LOC timestamp"));
            objects++;
            groups.add(o.groupId);
            latencies.push(performance.timeOrigin + performance.now() - Number(ts.value) / 1000);
            if (objects >= 60) {
              clearTimeout(timer);
              resolve();
            }
          };
        });
        sub.unsubscribe();
        session.close();
        latencies.sort((a, b) => a - b);
        return { objects, groups: groups.size, medianMs: latencies[latencies.length >> 1], negotiated: true };
      },
      { relayUrl, hash: tls.hash },
    );
    log(`stage 1 (transport): ${probe.objects} objects in ${probe.groups} groups over WebTransport, median object latency ${probe.medianMs.toFixed(1)} ms`);
    summary.transport = probe;
    stopChild(bench, "SIGINT");

    // ---- stage 1b: the WebCodecs path (VideoRenderer) with frames encoded in the page ----
    const codecs = await page.evaluate(async () => {
      const { VideoRenderer } = window.banyan;
      const results = {};
      for (const codec of ["avc1.42001f", "vp8"]) {
        const support = await VideoEncoder.isConfigSupported({ codec, width: 320, height: 240 });
        if (!support.supported) {
          results[codec] = "encoder unsupported";
          continue;
        }
        const chunks = [];
        let description;
        const encoder = new VideoEncoder({
          output: (c, meta) => {
            if (meta?.decoderConfig?.description) description = new Uint8Array(meta.decoderConfig.description);
            const data = new Uint8Array(c.byteLength);
            c.copyTo(data);
            chunks.push({ data, key: c.type === "key" });
          },
          error: (e) => (results[codec] = `encode error ${e.message}`),
        });
        encoder.configure({ codec, width: 320, height: 240, latencyMode: "realtime", ...(codec.startsWith("avc") ? { avc: { format: "avc" } } : {}) });
        const source = new OffscreenCanvas(320, 240);
        const g = source.getContext("2d");
        for (let i = 0; i < 60; i++) {
          g.fillStyle = `hsl(${i * 6}, 80%, 50%)`;
          g.fillRect(0, 0, 320, 240);
          const frame = new VideoFrame(source, { timestamp: i * 33_333 });
          encoder.encode(frame, { keyFrame: i % 30 === 0 });
          frame.close();
        }
        await encoder.flush();
        encoder.close();
        let rendered = 0;
        const errors = [];
        const track = { namespace: "x", name: "v", role: "video", codec, synthetic: false, ...(description ? { description } : {}) };
        const renderer = new VideoRenderer(document.querySelector("canvas"), track, {
          onRendered: () => rendered++,
          onDropped: () => {},
          onError: (m) => errors.push(m),
        });
        const deadline = Date.now() + 10_000;
        // Feed as a live source would (a few frames ahead of the decoder, never a 60-frame burst,
        // which the renderer deliberately sheds as backlog).
        for (const [i, c] of chunks.entries()) {
          while (rendered < i - 4 && errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
          renderer.decode({ group: Math.floor(i / 30), object: i % 30, captureUs: Date.now() * 1000, arrivalMs: 0, keyframe: c.key, data: { data: c.data } });
        }
        while (rendered < chunks.length && errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        renderer.close();
        results[codec] = errors.length ? `errors: ${errors.join("; ")}` : `${rendered}/${chunks.length} frames decoded and drawn`;
      }
      return results;
    });
    log(`stage 1b (WebCodecs renderer): ${JSON.stringify(codecs)}`);
    summary.webcodecs = codecs;
    if (!Object.values(codecs).some((r) => /^60\/60 frames/.test(r))) throw new Error("the WebCodecs renderer decoded no codec fully");
    await page.close();

    // ---- stage 2: real H.264 from banyan-publish ----
    const publishBin = bin("banyan-publish");
    const publisherReady = existsSync(publishBin) && statSync(publishBin).size > 1_000_000;
    if (!publisherReady) {
      const msg = `stage 2 (media) NOT RUN: ${publishBin} is missing or a stub (cargo build -p banyan-publisher)`;
      summary.media = "not run";
      if (process.env.BANYAN_E2E_ALLOW_MISSING_PUBLISHER === "1") {
        log(msg);
        return summary;
      }
      throw new Error(msg);
    }
    const broadcast = "live/e2e";
    const startPublisher = () => {
      // One fragment per frame (frag_every_frame): banyan-publish stamps each frame when its
      // fragment arrives, so GOP-long fragments (frag_keyframe) would hide a second of muxer
      // buffering from the latency figure. Opus audio exercises the audio track alongside.
      const ffmpeg = spawn("ffmpeg", [
        "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-tune", "zerolatency", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
        "-c:a", "libopus", "-b:a", "64k",
        "-f", "mp4", "-movflags", "frag_every_frame+empty_moov+default_base_moof", "-",
      ], { stdio: ["ignore", "pipe", "inherit"] });
      children.add(ffmpeg);
      ffmpeg.on("exit", () => children.delete(ffmpeg));
      const publisher = start("banyan-publish", publishBin, [
        `moqt://127.0.0.1:${port}`, "--broadcast", broadcast, "--tls-hash", tls.hash,
      ]);
      ffmpeg.stdout.pipe(publisher.child.stdin);
      publisher.child.stdin.on("error", () => {});
      return { ffmpeg, publisher };
    };
    const pub = startPublisher();
    const watchPage = await browser.newPage();
    watchPage.on("console", (m) => m.type() === "error" && log("page:", m.text()));
    const url = `${pageBase}/?relay=${encodeURIComponent(relayUrl)}&hash=${tls.hash}&broadcast=${encodeURIComponent(broadcast)}`;
    log(`opening ${url}`);
    await watchPage.goto(url);
    const stats = () => watchPage.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats ?? null)));
    await waitFor("60 decoded frames", 45_000, async () => {
      const s = await stats();
      if (pub.publisher.exited) throw new Error(`banyan-publish exited: ${tail(pub.publisher)}`);
      return s && s.framesDecoded >= 60 ? s : undefined;
    }, 250).catch(async (e) => {
      throw new Error(`${e.message}; stats ${JSON.stringify(await stats())}\nrelay:\n${tail(relay)}\npublisher:\n${tail(pub.publisher)}`);
    });
    // Latency: sample the overlay's figure for a second of steady playback.
    const samples = [];
    await waitFor("latency samples", 10_000, async () => {
      const s = await stats();
      if (s?.latencyMs !== undefined && s?.latencyMs !== null) samples.push(s.latencyMs);
      return samples.length >= 10;
    }, 100);
    samples.sort((a, b) => a - b);
    const median = samples[samples.length >> 1];
    const before = await stats();
    log(`stage 2 (media): decoded ${before.framesDecoded} frames, dropped ${before.framesDropped}, ${before.width}x${before.height} ${before.videoCodec}, ${before.audioFramesDecoded} audio frames, groups skipped ${before.groupsSkipped}, stalls ${before.stalls}, behind live p99 ${before.behindLiveP99Ms?.toFixed(0)} ms`);
    if (!/^avc[13]\./.test(before.videoCodec)) throw new Error(`expected H.264 from the catalog, got codec ${JSON.stringify(before.videoCodec)}`);
    if (before.width !== 640 || before.height !== 360) throw new Error(`decoded frames are ${before.width}x${before.height}, not 640x360`);
    log(`glass-to-glass latency on loopback: median ${median.toFixed(1)} ms (min ${samples[0].toFixed(1)}, max ${samples[samples.length - 1].toFixed(1)}), clock offset ${before.clockOffsetMs?.toFixed(1)} ms, ${before.bitrateKbps} kbit/s`);
    await watchPage.screenshot({ path: join(results, "playing.png") });
    log(`screenshot ${join(results, "playing.png")}`);
    if (!(median < 250)) throw new Error(`latency ${median} ms is not below 250 ms`);
    summary.media = { framesDecoded: before.framesDecoded, latencyMedianMs: median };

    // ---- relay restart: same port and certificate; GOAWAY (SIGTERM) then a new process ----
    // The same banyan-publish (and ffmpeg) keeps running: it must reconnect and re-announce
    // on its own, and the page must reconnect and resume at the next keyframe.
    const restartedAt = Date.now();
    stopChild(relay, "SIGTERM");
    await waitExit(relay, 15_000);
    const decodedAtRestart = (await stats()).framesDecoded;
    ({ relay, http: originHttp } = await startRelay(tls, `[::]:${port}`, originArgs));
    const after = await waitFor("playback to resume after the relay restart", 45_000, async () => {
      const s = await stats();
      if (pub.publisher.exited) throw new Error(`banyan-publish exited: ${tail(pub.publisher)}`);
      return s && s.reconnects >= 1 && s.framesDecoded >= decodedAtRestart + 60 ? s : undefined;
    }, 250).catch(async (e) => {
      throw new Error(`${e.message}; stats ${JSON.stringify(await stats())}\nrelay:\n${tail(relay)}\npublisher:\n${tail(pub.publisher)}`);
    });
    const resumedMs = Date.now() - restartedAt;
    log(`relay restart survived: ${after.reconnects} reconnect(s), decoded ${after.framesDecoded} frames (+${after.framesDecoded - decodedAtRestart}) within ${(resumedMs / 1000).toFixed(1)} s of SIGTERM, latency ${after.latencyMs?.toFixed(1)} ms`);
    if (!(after.latencyMs < 250)) throw new Error(`latency after the restart ${after.latencyMs} ms is not below 250 ms`);
    await watchPage.screenshot({ path: join(results, "after-restart.png") });
    summary.restart = { reconnects: after.reconnects, framesDecoded: after.framesDecoded, latencyMs: after.latencyMs, resumedMs };

    // ---- stage 3: likes and chat across two relays (origin + edge) ----
    if (!existsSync(bin("banyan-watch"))) throw new Error(`${bin("banyan-watch")} missing: cargo build -p banyan-publisher`);
    const edge = await startRelay(tls, "[::]:0", [
      "--relay-id", "e2e-edge", "--upstream", `moqt://127.0.0.1:${port}`, "--upstream-insecure",
    ], "edge banyan-relay");
    edgeRelay = edge.relay;
    log(`edge relay on udp port ${edge.port} (upstream: the relay on ${port})`);
    const watcher = start("banyan-watch", bin("banyan-watch"), [
      `moqt://127.0.0.1:${edge.port}`, "--broadcast", broadcast, "--tls-hash", tls.hash, "--output", "none",
    ]);
    const pageB = await browser.newPage();
    pageB.on("console", (m) => m.type() === "error" && log("page B:", m.text()));
    const urlB = `${pageBase}/?relay=${encodeURIComponent(`https://127.0.0.1:${edge.port}/`)}&hash=${tls.hash}&broadcast=${encodeURIComponent(broadcast)}&room=0`;
    await pageB.goto(urlB);
    const statsOf = (p) => p.evaluate(() => JSON.parse(JSON.stringify(window.banyanStats ?? null)));
    const chatOf = (p) => p.evaluate(() => Array.from(document.querySelectorAll("#chat-list li.comment"), (li) => li.lastChild?.textContent ?? ""));
    await waitFor("page B playing through the edge", 30_000, async () => {
      const s = await statsOf(pageB);
      return s && s.state === "playing" && s.framesDecoded > 0;
    }, 100).catch(async (e) => {
      throw new Error(`${e.message}; B stats ${JSON.stringify(await statsOf(pageB))}\nedge:\n${tail(edge.relay)}`);
    });
    await waitFor("banyan-watch to receive media", 30_000, () => {
      if (watcher.exited) throw new Error(`banyan-watch exited: ${tail(watcher)}`);
      return /watch: objects [1-9]/.test(watcher.text);
    }, 100);
    const likesOf = async (p) => (await statsOf(p))?.likes ?? 0;
    const base = Math.max(await likesOf(watchPage), await likesOf(pageB));
    const clickLikes = async (p, n) => {
      for (let i = 0; i < n; i++) await p.click("#like");
    };
    // A likes three times: B (on the edge) must count them.
    let t0 = Date.now();
    await clickLikes(watchPage, 3);
    await waitFor(`page B to count ${base + 3} likes`, 10_000, async () => (await likesOf(pageB)) >= base + 3, 10)
      .catch(async (e) => {
        throw new Error(`${e.message}; A ${await likesOf(watchPage)}, B ${await likesOf(pageB)}\nedge:\n${tail(edge.relay)}`);
      });
    const likeAtoB = Date.now() - t0;
    // B likes twice: the edge sums them and sends its total up; A (on the origin) must count them.
    t0 = Date.now();
    await clickLikes(pageB, 2);
    await waitFor(`page A to count ${base + 5} likes`, 10_000, async () => (await likesOf(watchPage)) >= base + 5, 10);
    const likeBtoA = Date.now() - t0;
    const finalA = await likesOf(watchPage);
    const finalB = await waitFor("page B to show the same total", 5_000, async () => {
      const n = await likesOf(pageB);
      return n === finalA ? n : undefined;
    }, 20);
    if (finalA !== base + 5) throw new Error(`like total ${finalA}, expected exactly ${base + 5}`);
    await waitFor(`banyan-watch to report likes ${finalA}`, 10_000, () => new RegExp(`likes ${finalA}\\b`).test(watcher.text), 50)
      .catch((e) => {
        throw new Error(`${e.message}\nbanyan-watch:\n${tail(watcher, 10)}`);
      });
    const likeToWatch = Date.now() - t0;
    log(`likes: 3 clicked in page A (origin) counted in page B (edge) after ${likeAtoB} ms; 2 clicked in B counted in A after ${likeBtoA} ms; total ${finalA} in A, ${finalB} in B, banyan-watch (edge) reported likes ${finalA} within ${likeToWatch} ms`);
    // The live viewer count: A (origin), B and banyan-watch (edge) are 3; the edge relay pulling
    // the broadcast from the origin is no viewer. Both pages show it beside the like counter.
    t0 = Date.now();
    const viewersOf = async (p) => ({
      stats: (await statsOf(p))?.viewers,
      shown: await p.evaluate(() => document.getElementById("viewers")?.dataset["count"]),
    });
    for (const [name, p] of [["A", watchPage], ["B", pageB]]) {
      await waitFor(`page ${name} to show 3 viewers`, 10_000, async () => {
        const v = await viewersOf(p);
        return v.stats === 3 && v.shown === "3";
      }, 20).catch(async (e) => {
        throw new Error(`${e.message}; ${JSON.stringify(await viewersOf(p))}`);
      });
    }
    await waitFor("banyan-watch to report viewers 3", 10_000, () => /viewers 3\b/.test(watcher.text), 50)
      .catch((e) => {
        throw new Error(`${e.message}\nbanyan-watch:\n${tail(watcher, 10)}`);
      });
    log(`viewer count: pages A (origin) and B (edge) and banyan-watch (edge) show 3 viewers (A, B, banyan-watch) within ${Date.now() - t0} ms`);
    // Comments: A → B and B → A, same room.
    const sendComment = async (p, text) => {
      await p.fill("#chat-input", text);
      await p.press("#chat-input", "Enter");
    };
    const textA = `hello from A ${Date.now()}`;
    t0 = Date.now();
    await sendComment(watchPage, textA);
    await waitFor("A's comment in page B's chat panel", 10_000, async () => (await chatOf(pageB)).includes(textA), 10)
      .catch(async (e) => {
        throw new Error(`${e.message}; B chat ${JSON.stringify(await chatOf(pageB))}; A error ${JSON.stringify((await statsOf(watchPage))?.lastError)} ${await watchPage.textContent("#notice")}`);
      });
    const commentAtoB = Date.now() - t0;
    const textB = `hi from B ${Date.now()}`;
    t0 = Date.now();
    await sendComment(pageB, textB);
    await waitFor("B's comment in page A's chat panel", 10_000, async () => (await chatOf(watchPage)).includes(textB), 10);
    const commentBtoA = Date.now() - t0;
    const chatA = await chatOf(watchPage);
    if (chatA.indexOf(textA) > chatA.indexOf(textB)) throw new Error(`chat order in A: ${JSON.stringify(chatA)}`);
    // A gift from B (edge): "sent" only once the origin's ledger recorded it and `events` says so.
    t0 = Date.now();
    await pageB.click("#gift");
    const giftSent = await waitFor("B's gift to be recorded", 15_000, async () => {
      const label = await pageB.textContent("#gift");
      return /sent \(#\d+\)/.test(label ?? "") ? label : undefined;
    }, 20).catch(async (e) => {
      throw new Error(`${e.message}; B notice ${await pageB.textContent("#notice")}\nedge:\n${tail(edge.relay)}`);
    });
    const giftMs = Date.now() - t0;
    await waitFor("the gift in page A's chat panel", 5_000, async () => (await watchPage.locator("#chat-list li.gift").count()) > 0, 20);
    const totals = await (await fetch(`http://${originHttp}/v1/gifts/${broadcast}`)).json();
    if (totals.gifts !== 1 || totals.amount !== 1) throw new Error(`gift totals ${JSON.stringify(totals)}, expected 1 gift of 1`);
    log(`gift: clicked in page B (edge), ${giftSent.trim()} after ${giftMs} ms, announced in page A; origin ledger totals ${JSON.stringify(totals)}`);
    await pageB.screenshot({ path: join(results, "interactions.png") });
    // History on join: B reloads and gets both comments from the room.
    t0 = Date.now();
    await pageB.reload();
    const history = await waitFor("the room's history after a reload", 15_000, async () => {
      const chat = await chatOf(pageB);
      return chat.includes(textA) && chat.includes(textB) ? chat : undefined;
    }, 20);
    const historyMs = Date.now() - t0;
    // The subscription alone starts at the room's current group; the FETCH must have answered too.
    const fetched = await waitFor("the history FETCH", 5_000, () => pageB.evaluate(() => window.banyanPlayer?.interactions?.historyFetched), 20)
      .catch(async (e) => {
        const state = await pageB.evaluate(() => {
          const i = window.banyanPlayer?.interactions;
          return i && { room: i.room, historyFetched: i.historyFetched, comments: i.comments?.length };
        });
        throw new Error(`${e.message}; B notice ${await pageB.textContent("#notice")}; B interactions ${JSON.stringify(state)}\nedge:\n${tail(edge.relay)}`);
      });
    if (fetched < 2) throw new Error(`the history FETCH returned ${fetched} comments, expected 2`);
    log(`comments: typed in page A shown in page B after ${commentAtoB} ms; typed in B shown in A after ${commentBtoA} ms; B reloaded shows ${history.length} comment(s) of room 0 after ${historyMs} ms (history FETCH returned ${fetched}); screenshot ${join(results, "interactions.png")}`);
    // A comment flood from A: its relay's per-viewer bucket (1/s, bursts of 5) refuses the excess
    // with STOP_SENDING 0x1001, which the page must report as rate_limited.
    const flood = await watchPage.evaluate(async () => {
      const sent = Array.from({ length: 8 }, (_, i) =>
        window.banyan.comment(window.banyanPlayer, `flood ${i}`).then(() => "ok", (e) => e.refusal ?? e.message));
      return Promise.all(sent);
    });
    log(`comment flood of 8 from page A: ${flood.join(", ")}`);
    if (!flood.includes("rate_limited")) throw new Error(`no comment of the flood was refused as rate_limited: ${flood.join(", ")}`);
    // Accepted ones (those before the refusal) reach the room: page B shows them.
    const accepted = flood.flatMap((o, i) => (o === "ok" ? [`flood ${i}`] : []));
    await waitFor("the accepted flood comments in page B", 5_000, async () => {
      const chat = await chatOf(pageB);
      return accepted.every((t) => chat.includes(t)) && !flood.some((o, i) => o !== "ok" && chat.includes(`flood ${i}`));
    }, 20);
    stopChild(watcher, "SIGINT");
    await waitExit(watcher, 10_000);
    const watchSummary = JSON.parse(watcher.text.trim().split("\n").filter((l) => l.startsWith("{")).pop() ?? "{}");
    if (watchSummary.likes !== finalA) throw new Error(`banyan-watch summary likes ${watchSummary.likes}, expected ${finalA}`);
    summary.interactions = {
      likes: finalA,
      likeAtoBMs: likeAtoB,
      likeBtoAMs: likeBtoA,
      likeToWatchMs: likeToWatch,
      watchSummaryLikes: watchSummary.likes,
      commentAtoBMs: commentAtoB,
      commentBtoAMs: commentBtoA,
      historyComments: history.length,
      historyFetched: fetched,
      commentFlood: flood.join(","),
      giftRecordedMs: giftMs,
    };
    stopChild(pub.publisher);
    pub.ffmpeg.kill("SIGTERM");
    await pageB.close();
    await watchPage.close();

    summary.narrowLink = await narrowLinkStage(browser, tls, pageBase);
    summary.transports = await transportsStage(browser, bin, pageBase, results);
    summary.goLive = await goLiveStage(executablePath, tls, pageBase);
    summary.ingest = await ingestStage(browser, bin, tls, pageBase, startRelay);
    summary.operator = await operatorStage(browser, bin, results);
    summary.abr = await abrStage(browser, bin, tls, pageBase, startRelay);
    return summary;
  } finally {
    await browser.close();
    server.close();
    stopChild(edgeRelay);
    stopChild(relay);
    rmSync(dir, { recursive: true, force: true });
  }
}

main()
  .then((summary) => {
    log("PASS", JSON.stringify(summary));
    for (const c of children) c.kill("SIGKILL");
    process.exit(0);
  })
  .catch((e) => {
    console.error("[e2e] FAIL", e instanceof Error ? e.stack ?? e.message : e);
    for (const c of children) c.kill("SIGKILL");
    process.exit(1);
  });
