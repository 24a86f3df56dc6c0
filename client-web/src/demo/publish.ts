/**
 * The "Go live" page: `/publish.html?relay=URL&hash=HEX&broadcast=NAME` (`&ws=URL` the relay's
 * WebSocket URL, `&token=JWT` a publish token (`&control=URL`: the control plane that minted it,
 * which refreshes it ahead of expiry), `&transport=webtransport|websocket`,
 * `&source=camera|screen`, `&size=WxH` (the camera size asked for, default 1280x720), `&bitrate=BPS`, `&codec=vp8` (or any WebCodecs codec string, comma-separated
 * in order of preference) instead of H.264 → VP8 → VP9). A preview of what is sent, a camera/screen choice,
 * the live/stop button, the publisher's stats (also `window.banyanPublishStats`) and a link to
 * the viewer page (index.html) for the same broadcast.
 */
import * as api from "../api";
import { publish, type Publisher, type PublishStats } from "../api";

declare global {
  interface Window {
    banyanPublishStats: PublishStats | { state: "error" | "idle"; lastError: string | undefined };
    banyanPublisher?: Publisher;
  }
}

window.banyan = api;
window.banyanPublishStats = { state: "idle", lastError: undefined };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const broadcast = params.get("broadcast") ?? "";
const relay = params.get("relay") ?? undefined;
const ws = params.get("ws") ?? undefined;
const hash = params.get("hash") ?? undefined;
const token = params.get("token") ?? undefined;
/** The control plane that minted `token` (it refreshes it ahead of expiry), if any. */
const control = params.get("control") ?? undefined;
const forced = params.get("transport");
const bitrate = Number(params.get("bitrate") ?? "") || undefined;
const size = /^(\d+)x(\d+)$/.exec(params.get("size") ?? "1280x720");
const codecs = params.get("codec")?.split(",").filter((c) => c !== "");

let publisher: Publisher | undefined;
let stream: MediaStream | undefined;

function viewerUrl(): string {
  const q = new URLSearchParams();
  if (relay) q.set("relay", relay);
  if (ws) q.set("ws", ws);
  if (hash) q.set("hash", hash);
  q.set("broadcast", broadcast);
  if (forced) q.set("transport", forced);
  return `./?${q.toString()}`;
}

function render(s: PublishStats): void {
  $("overlay").textContent = [
    `state     ${s.state}  (${s.transport ?? "–"}, ${s.relay}, reconnects ${s.reconnects})`,
    `video     ${s.videoCodec ?? "–"} ${s.width ?? "–"}x${s.height ?? "–"}`,
    `bitrate   ${s.bitrateKbps} kbit/s sent`,
    `frames    captured ${s.framesCaptured}  encoded ${s.framesEncoded}  sent ${s.framesSent}  dropped ${s.framesDropped}`,
    `encoder   queue ${s.encodeQueue}  (max ${s.maxEncodeQueue})`,
    `groups    ${s.groups}  abandoned ${s.groupsAbandoned}  (first ${s.firstGroup})`,
    `audio     ${s.audioFramesEncoded} frames`,
    `viewers   relay subscriptions: catalog ${s.subscribers["catalog"] ?? 0}, video ${s.subscribers["video"] ?? 0}, audio ${s.subscribers["audio"] ?? 0}`,
  ].join("\n");
  $("note").textContent = s.codecNote ?? "";
  $("error").textContent = s.lastError ?? "";
  $("state").textContent = s.state;
}

async function capture(source: string): Promise<MediaStream> {
  if (source === "screen") return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true });
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: Number(size?.[1] ?? 1280) }, height: { ideal: Number(size?.[2] ?? 720) }, frameRate: { ideal: 30 } },
    audio: true,
  });
}

async function goLive(): Promise<void> {
  if (!broadcast) throw new Error("add ?broadcast=NAME and ?relay=https://host:port/&hash=HEX (or ?ws=ws://host:port/)");
  if (!relay && !ws) throw new Error("add ?relay=https://host:port/ (and &hash=HEX for a development certificate) or ?ws=ws://host:port/");
  const transport = api.parseTransport(forced);
  if (forced && !transport) throw new Error(`?transport=${forced}: use webtransport or websocket`);
  const source = document.querySelector<HTMLInputElement>("input[name=source]:checked")?.value ?? "camera";
  stream = await capture(source);
  $<HTMLVideoElement>("preview").srcObject = stream;
  publisher = publish({
    ...(relay ? { relay } : {}),
    ...(ws ? { websocket: ws } : {}),
    ...(hash ? { hash } : {}),
    ...(token ? { token } : {}),
    ...(token && control ? { refreshToken: api.refreshFromControl(control) } : {}),
    ...(transport ? { transport } : {}),
    ...(bitrate ? { videoBitrate: bitrate } : {}),
    ...(codecs?.length ? { videoCodecs: codecs } : {}),
    broadcast,
    stream,
    onStats: render,
  });
  window.banyanPublisher = publisher;
  window.banyanPublishStats = publisher.stats;
  render(publisher.stats);
  await publisher.ready;
}

async function stop(): Promise<void> {
  await publisher?.stop();
  for (const t of stream?.getTracks() ?? []) t.stop();
  stream = undefined;
  $<HTMLVideoElement>("preview").srcObject = null;
}

const button = $<HTMLButtonElement>("live");
$<HTMLAnchorElement>("viewer").href = viewerUrl();
$("viewer").textContent = `watch ${broadcast || "(no broadcast)"} on the viewer page`;
const wanted = params.get("source");
if (wanted === "screen" || wanted === "camera") {
  const radio = document.querySelector<HTMLInputElement>(`input[name=source][value=${wanted}]`);
  if (radio) radio.checked = true;
}
button.addEventListener("click", () => {
  button.disabled = true;
  const live = button.classList.contains("on");
  const action = live ? stop() : goLive();
  button.classList.toggle("on", !live);
  button.textContent = live ? "Go live" : "Stop";
  action
    .catch((e: unknown) => {
      const message = e instanceof Error ? e.message : String(e);
      $("error").textContent = message;
      window.banyanPublishStats = publisher?.stats ?? { state: "error", lastError: message };
      button.classList.remove("on");
      button.textContent = "Go live";
      void stop();
    })
    .finally(() => (button.disabled = false));
});
