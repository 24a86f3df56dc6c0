/**
 * Subgroup streams (draft-18 §10.4.2): the SUBGROUP_HEADER and the objects that follow it.
 * Mirrors `banyan_moq::data::subgroup`. A reader decodes each object's header first and checks
 * `payloadLen` against its limit before buffering the payload.
 */
import { DecodeError, EncodeError, Reader, type KeyValuePair, type Writer } from "../coding";
import { ObjectStatus, decodeProperties, decodeStatus, encodeProperties } from "./object";
import { subgroupTypeCode, streamTypeFromCode, type SubgroupIdMode, type SubgroupType } from "./stream_type";

export type SubgroupId = { mode: "zero" } | { mode: "first-object-id" } | { mode: "explicit"; id: number };

export interface SubgroupHeader {
  trackAlias: number;
  groupId: number;
  subgroupId: SubgroupId;
  /** Absent when the stream type says "default priority". */
  publisherPriority?: number;
  properties: boolean;
  endOfGroup: boolean;
  firstObject: boolean;
}

export interface SubgroupObjectHeader {
  objectId: number;
  properties: KeyValuePair[];
  payloadLen: number;
  status: ObjectStatus;
}

export interface SubgroupObject {
  objectId: number;
  properties: KeyValuePair[];
  status: ObjectStatus;
  payload: Uint8Array;
}

export function subgroupHeaderType(h: SubgroupHeader): SubgroupType {
  return {
    properties: h.properties,
    subgroupIdMode: h.subgroupId.mode as SubgroupIdMode,
    endOfGroup: h.endOfGroup,
    defaultPriority: h.publisherPriority === undefined,
    firstObject: h.firstObject,
  };
}

export function decodeSubgroupHeaderAfterType(t: SubgroupType, r: Reader): SubgroupHeader {
  const trackAlias = r.varint("track alias");
  const groupId = r.varint("group id");
  const subgroupId: SubgroupId =
    t.subgroupIdMode === "explicit" ? { mode: "explicit", id: r.varint("subgroup id") } : { mode: t.subgroupIdMode };
  const header: SubgroupHeader = {
    trackAlias,
    groupId,
    subgroupId,
    properties: t.properties,
    endOfGroup: t.endOfGroup,
    firstObject: t.firstObject,
  };
  if (!t.defaultPriority) header.publisherPriority = r.u8();
  return header;
}

/** Decode a SUBGROUP_HEADER including its stream type. */
export function decodeSubgroupHeader(r: Reader): SubgroupHeader {
  const t = streamTypeFromCode(r.varint("stream type"));
  if (t.kind !== "subgroup") throw DecodeError.invalid("stream type is not SUBGROUP_HEADER");
  return decodeSubgroupHeaderAfterType(t.subgroup, r);
}

export function encodeSubgroupHeader(w: Writer, h: SubgroupHeader): void {
  w.varint(subgroupTypeCode(subgroupHeaderType(h))).varint(h.trackAlias).varint(h.groupId);
  if (h.subgroupId.mode === "explicit") w.varint(h.subgroupId.id);
  if (h.publisherPriority !== undefined) w.u8(h.publisherPriority);
}

/** The per-stream state: Object IDs are delta-encoded against the previous object. */
export class SubgroupStream {
  private firstObjectId: number | undefined;
  private prevObjectId: number | undefined;
  private ended = false;

  constructor(readonly header: SubgroupHeader) {}

  /** Decode the next object's fields up to its payload; advances `r` and the state only on success. */
  decodeObjectHeader(r: Reader): SubgroupObjectHeader {
    if (this.ended) {
      if (r.hasRemaining()) throw DecodeError.invalid("object after end of group or track");
      throw DecodeError.incomplete();
    }
    const delta = r.varint("object id delta");
    const objectId = this.prevObjectId === undefined ? delta : this.prevObjectId + delta + 1;
    if (!Number.isSafeInteger(objectId)) throw DecodeError.invalid("object id overflow");
    const properties = this.header.properties ? decodeProperties(r) : [];
    const payloadLen = r.varint("object payload length");
    const status = payloadLen === 0 ? decodeStatus(r) : ObjectStatus.Normal;
    if (status !== ObjectStatus.Normal && properties.length > 0) {
      throw DecodeError.invalid("properties on an object that is not normal");
    }
    this.firstObjectId ??= objectId;
    this.prevObjectId = objectId;
    this.ended = status !== ObjectStatus.Normal;
    return { objectId, properties, payloadLen, status };
  }

  /** Header and payload together; `maxPayloadLen` is checked before the payload is read. */
  decodeObject(r: Reader, maxPayloadLen: number): SubgroupObject {
    const start = r.pos;
    const saved = this.save();
    try {
      const h = this.decodeObjectHeader(r);
      if (h.payloadLen > maxPayloadLen) throw DecodeError.tooLarge("object payload length", h.payloadLen, maxPayloadLen);
      const payload = r.bytesExact(h.payloadLen);
      return { objectId: h.objectId, properties: h.properties, status: h.status, payload };
    } catch (e) {
      r.pos = start;
      this.restore(saved);
      throw e;
    }
  }

  encodeObject(w: Writer, o: SubgroupObject): void {
    const prev = this.prevObjectId;
    if (prev !== undefined && o.objectId <= prev) throw new EncodeError("object id does not follow the previous one");
    if (!this.header.properties && o.properties.length > 0) {
      throw new EncodeError("properties on a stream type without PROPERTIES");
    }
    if (o.status !== ObjectStatus.Normal && (o.payload.length > 0 || o.properties.length > 0)) {
      throw new EncodeError("non-normal status with payload or properties");
    }
    w.varint(prev === undefined ? o.objectId : o.objectId - prev - 1);
    if (this.header.properties) encodeProperties(w, o.properties);
    w.varint(o.payload.length);
    if (o.payload.length === 0) w.varint(o.status);
    w.bytes(o.payload);
    this.firstObjectId ??= o.objectId;
    this.prevObjectId = o.objectId;
  }

  /** The resolved Subgroup ID (known once the first object is read in first-object-id mode). */
  get subgroupId(): number | undefined {
    const s = this.header.subgroupId;
    return s.mode === "zero" ? 0 : s.mode === "explicit" ? s.id : this.firstObjectId;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  private save(): [number | undefined, number | undefined, boolean] {
    return [this.firstObjectId, this.prevObjectId, this.ended];
  }

  private restore([first, prev, ended]: [number | undefined, number | undefined, boolean]): void {
    this.firstObjectId = first;
    this.prevObjectId = prev;
    this.ended = ended;
  }
}
