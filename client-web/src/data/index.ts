/**
 * The data plane (draft-18 §10): stream types, subgroup and fetch streams, objects, datagrams
 * and padding. Mirrors `banyan_moq::data`.
 */
export * from "./object";
export * from "./stream_type";
export * from "./subgroup";
export * from "./fetch";
export * from "./datagram";
