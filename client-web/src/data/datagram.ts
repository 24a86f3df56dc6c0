/**
 * Datagrams (draft-18 §10.3.1 OBJECT_DATAGRAM, §10.5.2 padding). A datagram is whole, so
 * running out of bytes is malformed, never `incomplete`. Mirrors `banyan_moq::data::datagram`.
 */
import { DecodeError, EncodeError, Reader, Writer, incompleteAs, type KeyValuePair } from "../coding";
import { ObjectStatus, decodeProperties, decodeStatus, encodeProperties } from "./object";
import { PADDING_DATAGRAM } from "./stream_type";

export interface ObjectDatagram {
  trackAlias: number;
  groupId: number;
  objectId: number;
  publisherPriority?: number;
  properties: KeyValuePair[];
  endOfGroup: boolean;
  status: ObjectStatus;
  payload: Uint8Array;
}

export type Datagram = { kind: "object"; object: ObjectDatagram } | { kind: "padding"; paddingLen: number };

const T = { Properties: 0x01, EndOfGroup: 0x02, ZeroObjectId: 0x04, DefaultPriority: 0x08, Status: 0x20 } as const;

export function decodeDatagram(bytes: Uint8Array): Datagram {
  const r = new Reader(bytes);
  const truncated = () => DecodeError.invalid("truncated datagram");
  return incompleteAs(() => {
    const code = r.varint("datagram type");
    if (code === PADDING_DATAGRAM) return { kind: "padding", paddingLen: skipPadding(r) };
    if ((code & ~0x2f) !== 0 || ((code & T.Status) !== 0 && (code & T.EndOfGroup) !== 0)) {
      throw new DecodeError("unknown-datagram-type", `unknown datagram type 0x${code.toString(16)}`);
    }
    const trackAlias = r.varint("track alias");
    const groupId = r.varint("group id");
    const objectId = (code & T.ZeroObjectId) !== 0 ? 0 : r.varint("object id");
    const publisherPriority = (code & T.DefaultPriority) !== 0 ? undefined : r.u8();
    let properties: KeyValuePair[] = [];
    if ((code & T.Properties) !== 0) {
      properties = decodeProperties(r);
      if (properties.length === 0) throw DecodeError.invalid("empty properties with the PROPERTIES bit");
    }
    let status: ObjectStatus = ObjectStatus.Normal;
    let payload: Uint8Array = new Uint8Array();
    if ((code & T.Status) !== 0) {
      status = decodeStatus(r);
      if (status !== ObjectStatus.Normal && properties.length > 0) {
        throw DecodeError.invalid("properties on an object that is not normal");
      }
      if (r.hasRemaining()) throw DecodeError.invalid("bytes after the object status");
    } else {
      if (!r.hasRemaining()) throw DecodeError.invalid("empty payload without the STATUS bit");
      payload = r.rest();
    }
    const object: ObjectDatagram = {
      trackAlias,
      groupId,
      objectId,
      properties,
      endOfGroup: (code & T.EndOfGroup) !== 0,
      status,
      payload,
    };
    if (publisherPriority !== undefined) object.publisherPriority = publisherPriority;
    return { kind: "object", object };
  }, truncated);
}

export function encodeDatagram(d: Datagram): Uint8Array {
  const w = new Writer();
  if (d.kind === "padding") {
    w.varint(PADDING_DATAGRAM).bytes(new Uint8Array(d.paddingLen));
    return w.finish();
  }
  const o = d.object;
  const status = o.payload.length === 0;
  if (o.status !== ObjectStatus.Normal && !status) throw new EncodeError("object status with a payload");
  if (status && o.endOfGroup) throw new EncodeError("a status datagram cannot signal end of group");
  const code =
    (o.properties.length > 0 ? T.Properties : 0) |
    (o.endOfGroup ? T.EndOfGroup : 0) |
    (o.objectId === 0 ? T.ZeroObjectId : 0) |
    (o.publisherPriority === undefined ? T.DefaultPriority : 0) |
    (status ? T.Status : 0);
  w.varint(code).varint(o.trackAlias).varint(o.groupId);
  if (o.objectId !== 0) w.varint(o.objectId);
  if (o.publisherPriority !== undefined) w.u8(o.publisherPriority);
  if (o.properties.length > 0) encodeProperties(w, o.properties);
  if (status) w.varint(o.status);
  else w.bytes(o.payload);
  return w.finish();
}

/** Padding bytes must be zero; returns how many were skipped. */
export function skipPadding(r: Reader): number {
  const rest = r.rest();
  if (rest.some((b) => b !== 0)) throw DecodeError.invalid("non-zero padding");
  return rest.length;
}
