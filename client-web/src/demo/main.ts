/**
 * The demo page: `/?relay=URL&hash=HEX&broadcast=NAME`, or `/?broadcast=NAME` to ask the control
 * plane (`/v1/watch/{broadcast}`, same origin or `&control=URL`) for a relay. Live figures are
 * exposed to automation as `window.banyanStats`.
 */
import * as api from "../api";
import { like, watch, type PlayerStats } from "../api";

declare global {
  interface Window {
    banyanStats: PlayerStats | { state: "error"; lastError: string; framesDecoded: 0; framesDropped: 0; latencyMs: undefined; relay: ""; likes: 0 };
    /** The client API, for automation and the console. */
    banyan: typeof api;
  }
}

window.banyan = api;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const errorBox = $("error");

async function resolveTarget(): Promise<{ relay: string; hash?: string; token?: string; broadcast: string }> {
  const broadcast = params.get("broadcast") ?? "";
  if (!broadcast) throw new Error("add ?broadcast=NAME (and ?relay=https://host:port/&hash=HEX)");
  const relay = params.get("relay");
  if (relay) {
    const hash = params.get("hash") ?? undefined;
    return hash ? { relay, hash, broadcast } : { relay, broadcast };
  }
  const control = params.get("control") ?? location.origin;
  const response = await fetch(`${control}/v1/watch/${encodeURIComponent(broadcast).replace(/%2F/g, "/")}`);
  if (!response.ok) throw new Error(`control plane: HTTP ${response.status} for /v1/watch/${broadcast}`);
  const body = (await response.json()) as { webtransport?: string; cert_sha256?: string; token?: string };
  if (!body.webtransport) throw new Error("control plane assigned a relay without a WebTransport URL");
  const target: { relay: string; hash?: string; token?: string; broadcast: string } = {
    relay: body.webtransport,
    broadcast,
  };
  if (body.cert_sha256) target.hash = body.cert_sha256;
  if (body.token) target.token = body.token;
  return target;
}

function render(stats: PlayerStats): void {
  const ms = (v: number | undefined) => (v === undefined ? "–" : `${v.toFixed(0)} ms`);
  $("overlay").textContent = [
    `latency   ${ms(stats.latencyMs)}  (glass-to-glass)`,
    `clock off ${ms(stats.clockOffsetMs)}  (min transit + clock skew)`,
    `bitrate   ${stats.bitrateKbps} kbit/s`,
    `decoded   ${stats.framesDecoded}  dropped ${stats.framesDropped}`,
    `video     ${stats.videoCodec} ${stats.width}x${stats.height}  buffer ${ms(stats.bufferedMs)}`,
    `relay     ${stats.relay}  (${stats.state}, reconnects ${stats.reconnects})`,
  ].join("\n");
  $("likes").textContent = String(stats.likes);
  errorBox.textContent = stats.lastError ?? "";
}

async function main(): Promise<void> {
  const target = await resolveTarget();
  const latency = params.get("latency");
  const player = watch({
    ...target,
    canvas: $<HTMLCanvasElement>("video"),
    ...(latency ? { targetLatencyMs: Number(latency) } : {}),
    onStats: render,
  });
  window.banyanStats = player.stats;
  $("unmute").addEventListener("click", () => void player.unmute());
  $("like").addEventListener("click", () => {
    like(player).catch((e: unknown) => (errorBox.textContent = e instanceof Error ? e.message : String(e)));
  });
}

main().catch((e: unknown) => {
  const message = e instanceof Error ? e.message : String(e);
  window.banyanStats = {
    state: "error",
    lastError: message,
    framesDecoded: 0,
    framesDropped: 0,
    latencyMs: undefined,
    relay: "",
    likes: 0,
  };
  errorBox.textContent = message;
  $("overlay").textContent = "not playing";
});
