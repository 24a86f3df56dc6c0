/**
 * The two transports a session can run on, both behind the browser's `WebTransport` interface:
 *
 * - `webtransport`: the browser's own WebTransport (HTTP/3 over QUIC), to an `https://` URL.
 * - `websocket`: QMux (draft-ietf-quic-qmux: QUIC's streams, flow control and datagrams as
 *   records in binary WebSocket messages) through `@moq/qmux`, to a `ws://` or `wss://` URL. The
 *   relay (`banyan-relay --ws-listen`) speaks WebSocket subprotocol `qmux-01.moqt-18`: the QMux
 *   draft-01 wire format carrying MoQT draft-18, so `protocol` reads `moqt-18` as on WebTransport.
 *
 * `@moq/qmux`'s `Session` is WebTransport-shaped (bidirectional and unidirectional streams,
 * `datagrams`, `ready`, `closed`, `close`), so `Session` runs on it unchanged. What differs:
 * certificate hashes mean nothing to a WebSocket (`wss://` needs a certificate the browser
 * trusts; `ws://` needs none), and there is no congestion-control hint.
 */
import QMuxSession from "@moq/qmux";

/** Which transport a session runs on (`PlayerStats.transport`). */
export type TransportKind = "webtransport" | "websocket";

export const TRANSPORT_KINDS: readonly TransportKind[] = ["webtransport", "websocket"];

/** The MoQT version both transports negotiate (WT-Available-Protocols / the WebSocket subprotocol). */
export const MOQT_VERSION = "moqt-18";

/** The QMux wire format offered for {@link MOQT_VERSION}: the WebSocket subprotocol is `qmux-01.moqt-18`. */
export const QMUX_VERSION = "qmux-01";

/** The transport a relay URL names by its scheme: `ws:`/`wss:` → websocket, anything else → webtransport. */
export function transportOfUrl(url: string): TransportKind {
  return /^wss?:/i.test(url) ? "websocket" : "webtransport";
}

export interface OpenOptions {
  /** SHA-256 hashes of development certificates to accept (WebTransport only). */
  serverCertificateHashes?: string[];
}

/** Start opening a WebTransport-shaped transport to `url` (await its `ready`). */
export function openTransport(url: string, options: OpenOptions = {}): WebTransport {
  if (transportOfUrl(url) === "websocket") {
    providePromiseWithResolvers();
    // requireProtocol: offer only `qmux-01.moqt-18`, so a server that does not speak MoQT
    // draft-18 over QMux fails the WebSocket handshake instead of a later SETUP.
    return new QMuxSession(url, {
      protocols: [MOQT_VERSION],
      versions: { [MOQT_VERSION]: QMUX_VERSION },
      requireProtocol: true,
    });
  }
  const wtOptions: WebTransportOptions & { protocols?: string[] } = {
    protocols: [MOQT_VERSION],
    congestionControl: "low-latency",
  };
  if (options.serverCertificateHashes?.length) {
    wtOptions.serverCertificateHashes = options.serverCertificateHashes.map((h) => ({
      algorithm: "sha-256",
      value: hexToBytes(h),
    }));
  }
  return new WebTransport(url, wtOptions);
}

/** Hex (colons and spaces allowed) to bytes; throws on anything else. */
export function hexToBytes(hex: string): Uint8Array<ArrayBuffer> {
  const clean = hex.replace(/[:\s]/g, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(clean)) throw new Error(`not a hex hash: ${hex}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * `@moq/qmux` calls `Promise.withResolvers` (Safari 17.4+, Chrome 119+, Firefox 121+, Node 22+).
 * The WebSocket path is the one older iPhones take, so provide it where it is missing.
 */
function providePromiseWithResolvers(): void {
  const P = Promise as unknown as { withResolvers?: unknown };
  if (typeof P.withResolvers === "function") return;
  P.withResolvers = function withResolvers<T>() {
    let resolve!: (value: T | PromiseLike<T>) => void;
    let reject!: (reason?: unknown) => void;
    const promise = new Promise<T>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    return { promise, resolve, reject };
  };
}
