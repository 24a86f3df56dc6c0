/**
 * The demo page: `/?relay=URL&hash=HEX&broadcast=NAME` (chat room `&room=N`, default 0; the
 * relay's WebSocket URL `&ws=ws://host:port/`), or `/?broadcast=NAME` to ask the control plane
 * (`/v1/watch/{broadcast}`, same origin or `&control=URL`) for a relay (its `webtransport` and
 * `websocket` URLs) and a chat room. `&transport=webtransport|websocket` forces a transport. Live figures are exposed to automation as
 * `window.banyanStats`; the like button, viewer count, chat panel and gift button use the interaction tracks.
 * With a rendition ladder in the catalog the picker beside the buttons offers Auto (adaptive
 * bitrate, the default) and each rendition; `&rendition=NAME` starts on one. `&audio=0` plays
 * video only (the audio track is not subscribed).
 * `&user=NAME` asks control for a token in that name; `&mod=1` (with a NAME control lists as a
 * `--moderator` of the broadcast) shows the moderator's controls: delete on each comment, timeout,
 * ban, slow mode, gates, and the action log. Viewers see "message removed" and their own timeout or ban.
 */
import * as api from "../api";
import {
  comment,
  describeAction,
  gift,
  like,
  moderate,
  watch,
  type ChatComment,
  type GiftEvent,
  type ModAction,
  type ModUpdate,
  type PlayerStats,
} from "../api";

declare global {
  interface Window {
    banyanStats:
      | PlayerStats
      | { state: "error"; lastError: string; framesDecoded: 0; framesDropped: 0; latencyMs: undefined; relay: ""; transport: undefined; likes: 0; viewers: 0 };
    /** The client API, for automation and the console. */
    banyan: typeof api;
    /** The page's player (automation: `banyanPlayer.interactions.comments`). */
    banyanPlayer?: api.Player;
  }
}

window.banyan = api;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const errorBox = $("error");

interface Target {
  relay?: string;
  websocket?: string;
  hash?: string;
  token?: string;
  broadcast: string;
  room: string;
  /** The control plane the token came from (it refreshes it), if any. */
  control?: string;
  /** This viewer's name in the token. */
  sub?: string;
  /** The token has the `mod` claim. */
  moderator?: boolean;
}

async function resolveTarget(): Promise<Target> {
  const broadcast = params.get("broadcast") ?? "";
  if (!broadcast) throw new Error("add ?broadcast=NAME (and ?relay=https://host:port/&hash=HEX, or ?ws=ws://host:port/)");
  const relay = params.get("relay");
  const ws = params.get("ws");
  if (relay || ws) {
    const target: Target = { broadcast, room: params.get("room") ?? "0" };
    if (relay) target.relay = relay;
    if (ws) target.websocket = ws;
    const hash = params.get("hash");
    if (hash) target.hash = hash;
    return target;
  }
  const control = params.get("control") ?? location.origin;
  // A reload asks for the chat room this tab was in: control keeps it while it has space.
  const roomKey = `banyan.room.${broadcast}`;
  const previous = sessionStorage.getItem(roomKey);
  const asked = new URLSearchParams();
  if (previous && /^\d+$/.test(previous)) asked.set("room", previous);
  const user = params.get("user");
  if (user) asked.set("user", user);
  const query = asked.size > 0 ? `?${asked}` : "";
  const response = await fetch(`${control}/v1/watch/${encodeURIComponent(broadcast).replace(/%2F/g, "/")}${query}`);
  if (!response.ok) throw new Error(`control plane: HTTP ${response.status} for /v1/watch/${broadcast}`);
  const body = (await response.json()) as {
    webtransport?: string;
    websocket?: string;
    cert_sha256?: string;
    token?: string;
    chat_room?: string;
    sub?: string;
    moderator?: boolean;
  };
  if (!body.webtransport && !body.websocket) throw new Error("control plane assigned a relay without a WebTransport or WebSocket URL");
  const target: Target = { broadcast, room: body.chat_room ?? "0" };
  if (body.webtransport) target.relay = body.webtransport;
  if (body.websocket) target.websocket = body.websocket;
  sessionStorage.setItem(roomKey, target.room);
  if (body.cert_sha256) target.hash = body.cert_sha256;
  if (body.token) {
    target.token = body.token;
    target.control = control;
  }
  if (body.sub) target.sub = body.sub;
  if (body.moderator) target.moderator = true;
  return target;
}

function render(stats: PlayerStats): void {
  const ms = (v: number | undefined) => (v === undefined ? "–" : `${v.toFixed(0)} ms`);
  $("overlay").textContent = [
    `latency   ${ms(stats.latencyMs)}  (glass-to-glass)`,
    `clock off ${ms(stats.clockOffsetMs)}  (min transit + clock skew)`,
    `bitrate   ${stats.bitrateKbps} kbit/s`,
    `behind    ${ms(stats.behindLiveMs)}  (live; p50 ${ms(stats.behindLiveP50Ms)} p99 ${ms(stats.behindLiveP99Ms)} max ${ms(stats.behindLiveMaxMs)})`,
    `decoded   ${stats.framesDecoded}  dropped ${stats.framesDropped}  groups skipped ${stats.groupsSkipped}`,
    `stalls    ${stats.stalls}  (${(stats.stallMs / 1000).toFixed(1)} s frozen)`,
    `video     ${stats.videoCodec} ${stats.width}x${stats.height}  buffer ${ms(stats.bufferedMs)}`,
    ...renditionLines(stats),
    `relay     ${stats.relay}  (${stats.state}, reconnects ${stats.reconnects})`,
    `transport ${stats.transport ?? "–"}`,
    `token     refreshed ${stats.tokenRefreshes}${stats.tokenRefreshLeadS === undefined ? "" : ` (last ${stats.tokenRefreshLeadS.toFixed(1)} s before exp)`}`,
  ].join("\n");
  errorBox.textContent = stats.lastError ?? "";
  showRenditions(stats);
}

/** The overlay's adaptive-bitrate lines: rendition, estimate, switches and the last three. */
function renditionLines(stats: PlayerStats): string[] {
  if (stats.renditions.length === 0) return [];
  const kbps = (v: number | undefined) => (v === undefined ? "–" : `${v} kbit/s`);
  const playing = stats.renditions.find((r) => r.name === stats.rendition);
  const lines = [
    `rendition ${stats.rendition} (${kbps(playing ? Math.round(playing.bitrate / 1000) : undefined)}, ${stats.renditionMode})  estimate ${kbps(stats.estimateKbps)}`,
    `switches  ${stats.switches}  longest stall ${ms0(stats.longestStallMs)}`,
  ];
  for (const s of stats.switchLog.slice(-3)) {
    lines.push(`  ${new Date(s.atMs).toLocaleTimeString()} ${s.from} -> ${s.to} at group ${s.group} (${s.reason}, estimate ${kbps(s.estimateKbps)})`);
  }
  return lines;
}

const ms0 = (v: number) => `${v.toFixed(0)} ms`;

/** The rendition picker: Auto and one entry per rendition, filled once the catalog is known. */
function showRenditions(stats: PlayerStats): void {
  const picker = $<HTMLSelectElement>("rendition");
  const names = stats.renditions.map((r) => r.name);
  picker.hidden = names.length === 0;
  if (picker.dataset["names"] === names.join(",")) return;
  picker.dataset["names"] = names.join(",");
  const option = (value: string, label: string) => {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  };
  picker.replaceChildren(
    option("auto", "Auto"),
    ...stats.renditions.map((r) =>
      option(r.name, `${r.name.replace(/^video\//, "")}${r.width && r.height ? ` · ${r.width}x${r.height}` : ""} · ${Math.round(r.bitrate / 1000)} kbit/s`),
    ),
  );
  picker.value = stats.renditionMode === "auto" ? "auto" : stats.rendition;
}

// ---- likes: the counter counts up to each new total, with a pop ----

let shownLikes = 0;
let likesTarget = 0;
let likesTimer: ReturnType<typeof setInterval> | undefined;

function showLikes(total: number): void {
  likesTarget = total;
  const counter = $("likes");
  counter.classList.remove("pop");
  void counter.offsetWidth; // restart the animation
  counter.classList.add("pop");
  if (likesTimer) return;
  likesTimer = setInterval(() => {
    const step = Math.max(1, Math.ceil(Math.abs(likesTarget - shownLikes) / 8));
    shownLikes += Math.sign(likesTarget - shownLikes) * step;
    counter.textContent = String(shownLikes);
    counter.dataset["total"] = String(likesTarget);
    if (shownLikes === likesTarget) {
      clearInterval(likesTimer);
      likesTimer = undefined;
    }
  }, 30);
}

/** The live viewer count beside the like counter (`data-count` for automation). */
function showViewers(count: number): void {
  const viewers = $("viewers");
  viewers.textContent = `👁 ${count}`;
  viewers.title = `${count} watching now`;
  viewers.dataset["count"] = String(count);
}

function floatHeart(): void {
  const heart = document.createElement("span");
  heart.className = "heart";
  heart.textContent = "♥";
  heart.style.right = `${16 + Math.random() * 40}px`;
  $("stage").appendChild(heart);
  heart.addEventListener("animationend", () => heart.remove());
}

// ---- chat ----

function chatLine(text: string, ms: number, className?: string, seq?: number): HTMLLIElement {
  const li = document.createElement("li");
  if (className) li.className = className;
  if (seq !== undefined) li.dataset["seq"] = String(seq);
  const time = document.createElement("time");
  time.textContent = new Date(ms).toLocaleTimeString();
  li.append(time, text);
  return li;
}

function showComment(c: ChatComment): void {
  const list = $("chat-list");
  const line = chatLine(c.removed ? "message removed" : c.text, c.acceptedMs, c.removed ? "comment removed" : "comment", c.seq);
  if (c.author) {
    // The author before the text (the text stays the line's last node).
    const author = document.createElement("b");
    author.className = "author";
    author.textContent = `${c.author} `;
    line.lastChild?.before(author);
  }
  if (moderatorView && !c.removed) line.prepend(...moderatorButtons(c));
  // Keep the origin's order: history can arrive after live comments.
  const after = Array.from(list.querySelectorAll<HTMLLIElement>("li.comment")).find(
    (li) => Number(li.dataset["seq"]) > c.seq,
  );
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  list.insertBefore(line, after ?? null);
  while (list.children.length > 200) list.firstElementChild?.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/** A comment a moderator deleted: its text replaced by "message removed". */
function showRemoved(c: ChatComment): void {
  const line = $("chat-list").querySelector<HTMLLIElement>(`li.comment[data-seq="${c.seq}"]`);
  if (!line) return;
  line.classList.add("removed");
  line.lastChild?.remove();
  line.append("message removed");
  for (const b of line.querySelectorAll("button.mod")) b.remove();
}

function showGift(e: GiftEvent): void {
  const list = $("chat-list");
  list.appendChild(chatLine(`🎁 gift #${e.seq}: ${e.amount} × kind ${e.kind}`, Date.now(), "gift"));
  list.scrollTop = list.scrollHeight;
}

// ---- moderation ----

let moderatorView = false;
let moderatorAct: (action: ModAction) => void = () => {};

/** A moderator's buttons on a comment: delete it; time out (60 s) or ban its author. */
function moderatorButtons(c: ChatComment): HTMLButtonElement[] {
  const button = (className: string, label: string, title: string, action: ModAction) => {
    const b = document.createElement("button");
    b.className = `mod ${className}`;
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", () => moderatorAct(action));
    return b;
  };
  const buttons = [button("delete", "✕", `delete comment #${c.seq}`, { kind: "delete", room: Number(currentRoom), seq: c.seq })];
  if (c.author) {
    buttons.push(
      button("timeout", "⏱", `time out ${c.author} for 60 s`, { kind: "timeout", sub: c.author, secs: 60 }),
      button("ban", "⛔", `ban ${c.author}`, { kind: "ban", sub: c.author }),
    );
  }
  return buttons;
}

let currentRoom = "0";

/** The viewer's own standing and, for moderators, the action log. */
function showModeration(update: ModUpdate, standing: { banned: boolean; timedOutUntil: number | undefined }): void {
  const state = update.state;
  const modes = [
    state.slowSecs > 0 ? `slow mode: one comment per ${state.slowSecs} s` : "",
    state.gate !== "open" ? `${state.gate}-only chat` : "",
  ].filter(Boolean);
  const mine = standing.banned
    ? "You are banned from this chat."
    : standing.timedOutUntil
      ? `You are timed out until ${new Date(standing.timedOutUntil).toLocaleTimeString()}.`
      : "";
  const status = $("mod-status");
  status.textContent = [mine, ...modes].filter(Boolean).join(" · ");
  status.dataset["banned"] = String(standing.banned);
  status.dataset["timedOut"] = String(standing.timedOutUntil !== undefined);
  if (moderatorView && update.action) {
    const log = $("mod-log");
    const li = document.createElement("li");
    li.textContent = `${new Date(update.atMs).toLocaleTimeString()} ${update.by}: ${describeAction(update.action)}`;
    log.prepend(li);
    while (log.children.length > 100) log.lastElementChild?.remove();
  }
}

/** The moderator's controls (timeout, ban, slow mode, gate) and the action log so far, read
 * from the origin's store when `&log=URL` names its HTTP listener. */
function setUpModeratorPanel(act: (action: ModAction) => void): void {
  $("mod-panel").hidden = false;
  const who = () => $<HTMLInputElement>("mod-user").value.trim();
  $("mod-timeout").addEventListener("click", () =>
    act({ kind: "timeout", sub: who(), secs: Number($<HTMLInputElement>("mod-secs").value) || 60 }),
  );
  $("mod-ban").addEventListener("click", () => act({ kind: "ban", sub: who() }));
  $("mod-unban").addEventListener("click", () => act({ kind: "unban", sub: who() }));
  $("mod-slow").addEventListener("click", () =>
    act({ kind: "slow", secs: Number($<HTMLInputElement>("mod-slow-secs").value) || 0 }),
  );
  $<HTMLSelectElement>("mod-gate").addEventListener("change", (e) => {
    const gate = (e.target as HTMLSelectElement).value as "open" | "followers" | "subscribers";
    act({ kind: "gate", gate });
  });
  const logUrl = params.get("log");
  if (logUrl) {
    void fetch(logUrl)
      .then((r) => r.json() as Promise<{ at_ms: number; moderator: string; action: string }[]>)
      .then((entries) => {
        const log = $("mod-log");
        for (const e of entries) {
          const li = document.createElement("li");
          li.textContent = `${new Date(e.at_ms).toLocaleTimeString()} ${e.moderator}: ${e.action}`;
          log.prepend(li);
        }
      })
      .catch(() => {});
  }
}

async function main(): Promise<void> {
  const target = await resolveTarget();
  const latency = params.get("latency");
  const rendition = params.get("rendition");
  const audio = params.get("audio");
  const forced = params.get("transport");
  const transport = api.parseTransport(forced);
  if (forced && !transport) throw new Error(`?transport=${forced}: use webtransport or websocket`);
  const { control, moderator: _moderator, ...relay } = target;
  const player = watch({
    ...relay,
    // A token from control is refreshed there ahead of its expiry (the relay ends the session
    // 5 s after it).
    ...(control ? { refreshToken: api.refreshFromControl(control) } : {}),
    ...(transport ? { transport } : {}),
    canvas: $<HTMLCanvasElement>("video"),
    ...(latency ? { targetLatencyMs: Number(latency) } : {}),
    ...(rendition ? { rendition } : {}),
    ...(audio === "0" ? { audio: false } : {}),
    onStats: render,
  });
  window.banyanStats = player.stats;
  window.banyanPlayer = player;
  // Interaction failures (a refused comment, a gift not recorded) stay up for a few seconds; the
  // player's own lastError line is redrawn with every stats update.
  let noticeTimer: ReturnType<typeof setTimeout> | undefined;
  const notice = (message: string) => {
    $("notice").textContent = message;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => ($("notice").textContent = ""), 6000);
  };
  const fail = (e: unknown) => notice(e instanceof Error ? e.message : String(e));
  $("room").textContent = target.room;
  currentRoom = target.room;
  if (params.get("mod") === "1") {
    if (!target.moderator && target.token) notice("?mod=1: control did not grant this user the mod claim (see --moderator)");
    moderatorView = true;
    moderatorAct = (action) => void moderate(player, action).catch(fail);
    setUpModeratorPanel(moderatorAct);
  }
  const interactions = player.interactions;
  if (interactions) {
    interactions.onLikes = showLikes;
    interactions.onViewers = showViewers;
    interactions.onComment = showComment;
    interactions.onGift = showGift;
    interactions.onRemoved = showRemoved;
    interactions.onModeration = (update) => showModeration(update, interactions.standing());
    interactions.onError = notice;
  }
  $("unmute").addEventListener("click", () => void player.unmute());
  $<HTMLSelectElement>("rendition").addEventListener("change", (event) => {
    try {
      player.setRendition((event.target as HTMLSelectElement).value);
    } catch (e) {
      fail(e);
    }
  });
  $("like").addEventListener("click", () => {
    $("like").classList.add("liked");
    floatHeart();
    like(player).catch(fail);
  });
  $("gift").addEventListener("click", () => {
    const button = $<HTMLButtonElement>("gift");
    button.disabled = true;
    button.textContent = "🎁 sending…";
    gift(player, 1, 1)
      .then((e) => (button.textContent = `🎁 sent (#${e.seq})`))
      .catch(fail)
      .finally(() => {
        button.disabled = false;
        setTimeout(() => (button.textContent = "🎁 Gift"), 3000);
      });
  });
  const input = $<HTMLInputElement>("chat-input");
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    comment(player, text).catch(fail);
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
    transport: undefined,
    likes: 0,
    viewers: 0,
  };
  errorBox.textContent = message;
  $("overlay").textContent = "not playing";
});
