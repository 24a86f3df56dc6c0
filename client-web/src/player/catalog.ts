/**
 * The MSF catalog (draft-ietf-moq-msf, "Catalog"): JSON on the `catalog` track. We read the
 * independent catalog (the first object of a group) and pick one video and one audio track; every
 * video track is also listed in `videos` (a rendition ladder: tracks sharing an `altGroup`, each
 * with its `bitrate`, for the player's adaptive bitrate).
 * Decoder configuration comes from `initDataList` entries of type `inline` (base64) referenced
 * by a track's `initRef` (what `banyan-media` writes), or later from the LOC config property.
 * Unknown fields are ignored, as the draft requires.
 */
export const CATALOG_TRACK = "catalog";

export interface MediaTrack {
  namespace: string;
  name: string;
  role: "video" | "audio";
  codec: string;
  width?: number;
  height?: number;
  samplerate?: number;
  channels?: number;
  framerate?: number;
  bitrate?: number;
  /** The MSF `altGroup`: tracks sharing one are alternatives (renditions) of each other. */
  altGroup?: number;
  /** WebCodecs `description` (avcC, OpusHead...) if the catalog carries it inline. */
  description?: Uint8Array;
  /** Banyan marks synthetic filler tracks: their payloads are not decodable. */
  synthetic: boolean;
}

export interface ParsedCatalog {
  video?: MediaTrack;
  audio?: MediaTrack;
  /** Every video track, in catalog order (the first is `video`). */
  videos: MediaTrack[];
  tracks: MediaTrack[];
}

export class CatalogError extends Error {
  override readonly name = "CatalogError";
}

/** Parse an independent catalog object; `namespace` is the broadcast's (tracks may override). */
export function parseCatalog(bytes: Uint8Array, namespace: string): ParsedCatalog {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new CatalogError(`catalog is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!isObject(json)) throw new CatalogError("catalog is not a JSON object");
  if (json["deltaUpdate"] !== undefined && json["tracks"] === undefined) {
    throw new CatalogError("catalog object is a delta update, not an independent catalog");
  }
  const rawTracks = json["tracks"];
  if (!Array.isArray(rawTracks)) throw new CatalogError("catalog has no tracks array");
  const init = new Map<string, Uint8Array>();
  const list = json["initDataList"];
  if (Array.isArray(list)) {
    for (const entry of list) {
      if (isObject(entry) && entry["type"] === "inline" && typeof entry["id"] === "string" && typeof entry["data"] === "string") {
        try {
          init.set(entry["id"], base64(entry["data"]));
        } catch {
          // unusable init data: the LOC config property may still provide it
        }
      }
    }
  }
  const tracks: MediaTrack[] = [];
  for (const t of rawTracks) {
    if (!isObject(t) || typeof t["name"] !== "string") continue;
    const codec = typeof t["codec"] === "string" ? t["codec"] : "";
    const role = roleOf(t["role"], codec);
    if (!role) continue;
    const track: MediaTrack = {
      namespace: typeof t["namespace"] === "string" ? t["namespace"] : namespace,
      name: t["name"],
      role,
      codec,
      synthetic: t["banyan.synthetic"] === true,
    };
    const num = (k: string) => (typeof t[k] === "number" ? (t[k] as number) : undefined);
    const set = <K extends keyof MediaTrack>(k: K, v: MediaTrack[K] | undefined) => {
      if (v !== undefined) track[k] = v;
    };
    set("width", num("width"));
    set("height", num("height"));
    set("samplerate", num("samplerate"));
    set("framerate", num("framerate"));
    set("bitrate", num("bitrate"));
    set("altGroup", num("altGroup"));
    if (typeof t["channelConfig"] === "string") set("channels", parseInt(t["channelConfig"], 10) || undefined);
    if (typeof t["initRef"] === "string") set("description", init.get(t["initRef"]));
    tracks.push(track);
  }
  const out: ParsedCatalog = { tracks, videos: tracks.filter((t) => t.role === "video") };
  const video = tracks.find((t) => t.role === "video");
  const audio = tracks.find((t) => t.role === "audio");
  if (video) out.video = video;
  if (audio) out.audio = audio;
  return out;
}

function roleOf(role: unknown, codec: string): "video" | "audio" | undefined {
  if (role === "video" || role === "audio") return role;
  if (role !== undefined) return undefined;
  if (/^(avc[13]|hvc1|hev1|vp0?[89]|av01)/.test(codec)) return "video";
  if (/^(opus|mp4a|flac|pcm)/.test(codec)) return "audio";
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function base64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
