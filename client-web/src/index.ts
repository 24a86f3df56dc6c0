/**
 * Banyan's browser client.
 *
 * Module map:
 * - `coding/`  wire primitives (draft-18 varint, Key-Value-Pairs, names, Reader/Writer)
 * - `message/` control messages and parameters, framing
 * - `data/`    subgroup/fetch streams, datagrams, object properties
 * - `session/` MoQT session (SETUP, SUBSCRIBE, FETCH, GOAWAY, data streams) over WebTransport or
 *              QMux over WebSocket (`transport.ts`, `@moq/qmux`); choosing between them
 *              (`choose.ts`: forced, WebKit, remembered winner, the 500 ms head-start race)
 * - `player/`  MSF catalog, LOC, jitter buffer (skips late groups, counts them), playback meter
 *              (behind live, stalls), WebCodecs decoding, audio worklet, stats
 * - `api.ts`   the small public API: connect, watch, like, comment, gift
 */
export * from "./api";
export * as coding from "./coding";
export * as message from "./message";
export * as data from "./data";
