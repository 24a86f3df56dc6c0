/**
 * Banyan's browser client.
 *
 * Module map:
 * - `coding/`  wire primitives (draft-18 varint, Key-Value-Pairs, names, Reader/Writer)
 * - `message/` control messages and parameters, framing
 * - `data/`    subgroup/fetch streams, datagrams, object properties
 * - `session/` MoQT session (SETUP, SUBSCRIBE, FETCH, GOAWAY, data streams; PUBLISH_NAMESPACE and
 *              answering SUBSCRIBEs in `serve.ts`) over WebTransport or
 *              QMux over WebSocket (`transport.ts`, `@moq/qmux`); choosing between them
 *              (`choose.ts`: forced, WebKit, remembered winner, the 500 ms head-start race)
 * - `player/`  MSF catalog, LOC, jitter buffer (skips late groups, counts them), playback meter
 *              (behind live, stalls), WebCodecs decoding, audio worklet, stats
 * - `publish/` going live from a MediaStream: WebCodecs encoding, LOC objects, the MSF catalog,
 *              group numbering, keyframe, encoder-queue and group-abandon policies (`groups.ts`)
 * - `api.ts`   the small public API: connect, watch, like, comment, gift, publish
 */
export * from "./api";
export * as coding from "./coding";
export * as message from "./message";
export * as data from "./data";
