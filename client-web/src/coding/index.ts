/**
 * Wire primitives shared by every message and stream: the draft-18 varint, Location,
 * Key-Value-Pair, namespace tuples and track names, the {@link Reader}/{@link Writer}
 * cursor pair and their errors. Mirrors `banyan_moq::coding`.
 */
export * from "./error";
export * from "./varint";
export * from "./reader";
export * from "./writer";
export * from "./kvp";
export * from "./name";
export * from "./location";

/** The MoQT protocol versions this build speaks, most preferred first (ALPN / WT protocol tokens). */
export const Version = { Draft18: "moqt-18" } as const;
export type Version = (typeof Version)[keyof typeof Version];
export const SUPPORTED_VERSIONS: readonly Version[] = [Version.Draft18];
