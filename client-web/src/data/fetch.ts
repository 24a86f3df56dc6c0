/**
 * Fetch streams (draft-18 §10.4.4): FETCH_HEADER, then objects opened by Serialization Flags
 * or End of Range markers, delta-encoded against the prior object. Mirrors
 * `banyan_moq::data::fetch`.
 */
import { DecodeError, EncodeError, Reader, type KeyValuePair, type Writer } from "../coding";
import { decodeProperties, encodeProperties } from "./object";
import { FETCH_HEADER } from "./stream_type";

export const END_OF_NON_EXISTENT_RANGE = 0x8c;
export const END_OF_UNKNOWN_RANGE = 0x10c;

const F = {
  SubgroupMask: 0x03,
  SubgroupZero: 0x00,
  SubgroupPrior: 0x01,
  SubgroupNext: 0x02,
  SubgroupPresent: 0x03,
  ObjectIdPresent: 0x04,
  GroupIdPresent: 0x08,
  PriorityPresent: 0x10,
  PropertiesPresent: 0x20,
  Datagram: 0x40,
} as const;

export type FetchGroupOrder = "ascending" | "descending";

export interface FetchObject {
  groupId: number;
  /** Absent for objects that were sent as datagrams. */
  subgroupId?: number;
  objectId: number;
  publisherPriority: number;
  properties: KeyValuePair[];
  payload: Uint8Array;
}

export interface EndOfRange {
  kind: "non-existent" | "unknown";
  groupId: number;
  objectId: number;
}

export type FetchItem = { kind: "object"; object: FetchObject } | { kind: "end-of-range"; end: EndOfRange };

export function encodeFetchHeader(w: Writer, requestId: number): void {
  w.varint(FETCH_HEADER).varint(requestId);
}

export class FetchStream {
  private prior: { group: number; object: number } | undefined;
  private priorSubgroup: number | undefined;
  private priorPriority: number | undefined;

  constructor(readonly order: FetchGroupOrder = "ascending") {}

  /** Decode one item; advances `r` and the state only on success. */
  decodeItem(r: Reader, maxPayloadLen: number): FetchItem {
    const start = r.pos;
    try {
      const flags = r.varint("fetch serialization flags");
      if (flags === END_OF_NON_EXISTENT_RANGE || flags === END_OF_UNKNOWN_RANGE) {
        const end: EndOfRange = {
          kind: flags === END_OF_NON_EXISTENT_RANGE ? "non-existent" : "unknown",
          groupId: r.varint("group id"),
          objectId: r.varint("object id"),
        };
        this.prior = { group: end.groupId, object: end.objectId };
        return { kind: "end-of-range", end };
      }
      if (flags >= 0x80) throw DecodeError.invalid("fetch serialization flags");
      const object = this.decodeObject(flags, r, maxPayloadLen);
      this.prior = { group: object.groupId, object: object.objectId };
      this.priorSubgroup = object.subgroupId;
      this.priorPriority = object.publisherPriority;
      return { kind: "object", object };
    } catch (e) {
      r.pos = start;
      throw e;
    }
  }

  private decodeObject(flags: number, r: Reader, maxPayloadLen: number): FetchObject {
    const noPrior = () => DecodeError.invalid("fetch object references a missing prior object");
    const groupPresent = (flags & F.GroupIdPresent) !== 0;
    let groupId: number;
    if (groupPresent) {
      const v = r.varint("group id");
      if (this.prior === undefined) groupId = v;
      else groupId = this.order === "ascending" ? this.prior.group + v + 1 : this.prior.group - v - 1;
      if (groupId < 0 || !Number.isSafeInteger(groupId)) throw DecodeError.invalid("fetch object id out of range");
    } else {
      if (this.prior === undefined) throw noPrior();
      groupId = this.prior.group;
    }
    let subgroupId: number | undefined;
    if ((flags & F.Datagram) === 0) {
      switch (flags & F.SubgroupMask) {
        case F.SubgroupZero:
          subgroupId = 0;
          break;
        case F.SubgroupPrior:
          if (this.priorSubgroup === undefined) throw noPrior();
          subgroupId = this.priorSubgroup;
          break;
        case F.SubgroupNext:
          if (this.priorSubgroup === undefined) throw noPrior();
          subgroupId = this.priorSubgroup + 1;
          break;
        default:
          subgroupId = r.varint("subgroup id");
      }
    }
    let objectId: number;
    if ((flags & F.ObjectIdPresent) !== 0) {
      const v = r.varint("object id");
      objectId = this.prior === undefined || groupPresent ? v : this.prior.object + v;
    } else {
      if (this.prior === undefined) throw noPrior();
      objectId = this.prior.object + 1;
    }
    let publisherPriority: number;
    if ((flags & F.PriorityPresent) !== 0) publisherPriority = r.u8();
    else if (this.priorPriority === undefined) throw noPrior();
    else publisherPriority = this.priorPriority;
    const properties = (flags & F.PropertiesPresent) !== 0 ? decodeProperties(r) : [];
    const payloadLen = r.varint("object payload length");
    if (payloadLen > maxPayloadLen) throw DecodeError.tooLarge("object payload length", payloadLen, maxPayloadLen);
    const payload = r.bytesExact(payloadLen);
    const object: FetchObject = { groupId, objectId, publisherPriority, properties, payload };
    if (subgroupId !== undefined) object.subgroupId = subgroupId;
    return object;
  }

  encodeItem(w: Writer, item: FetchItem): void {
    if (item.kind === "end-of-range") {
      const e = item.end;
      w.varint(e.kind === "non-existent" ? END_OF_NON_EXISTENT_RANGE : END_OF_UNKNOWN_RANGE);
      w.varint(e.groupId).varint(e.objectId);
      this.prior = { group: e.groupId, object: e.objectId };
      return;
    }
    const o = item.object;
    let bits = 0;
    let groupField: number | undefined;
    let objectField: number | undefined;
    const prior = this.prior;
    const follows = prior !== undefined && prior.object + 1 === o.objectId;
    if (prior === undefined) {
      bits |= F.GroupIdPresent | F.ObjectIdPresent;
      groupField = o.groupId;
      objectField = o.objectId;
    } else if (prior.group === o.groupId) {
      if (!follows) {
        if (o.objectId < prior.object) throw new EncodeError("fetch object id goes backwards within a group");
        bits |= F.ObjectIdPresent;
        objectField = o.objectId - prior.object;
      }
    } else {
      const distance = (this.order === "ascending" ? o.groupId - prior.group : prior.group - o.groupId) - 1;
      if (distance < 0) throw new EncodeError("fetch group id against the group order");
      bits |= F.GroupIdPresent;
      groupField = distance;
      if (!follows) {
        bits |= F.ObjectIdPresent;
        objectField = o.objectId;
      }
    }
    let subgroupField: number | undefined;
    if (o.subgroupId === undefined) bits |= F.Datagram;
    else if (o.subgroupId === 0) bits |= F.SubgroupZero;
    else if (this.priorSubgroup === o.subgroupId) bits |= F.SubgroupPrior;
    else if (this.priorSubgroup !== undefined && this.priorSubgroup + 1 === o.subgroupId) bits |= F.SubgroupNext;
    else {
      bits |= F.SubgroupPresent;
      subgroupField = o.subgroupId;
    }
    if (this.priorPriority !== o.publisherPriority) bits |= F.PriorityPresent;
    if (o.properties.length > 0) bits |= F.PropertiesPresent;
    w.varint(bits);
    if (groupField !== undefined) w.varint(groupField);
    if (subgroupField !== undefined) w.varint(subgroupField);
    if (objectField !== undefined) w.varint(objectField);
    if ((bits & F.PriorityPresent) !== 0) w.u8(o.publisherPriority);
    if ((bits & F.PropertiesPresent) !== 0) encodeProperties(w, o.properties);
    w.varint(o.payload.length).bytes(o.payload);
    this.prior = { group: o.groupId, object: o.objectId };
    this.priorSubgroup = o.subgroupId;
    this.priorPriority = o.publisherPriority;
  }
}
