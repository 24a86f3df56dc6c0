/**
 * Message Parameters (draft-18 §10.2), the AUTHORIZATION TOKEN structure (§10.2.2) and
 * Subscription Filters (§5.1.2). Mirrors `banyan_moq::message::{params, auth_token,
 * subscription_filter, group_order}`.
 *
 * The block is bounded by a count; every type has its own value encoding, so an unknown type is
 * a PROTOCOL_VIOLATION. Types are delta-encoded (ascending); only AUTHORIZATION TOKEN repeats.
 */
import {
  DecodeError,
  Reader,
  decodeLocation,
  decodeNamespace,
  encodeLocation,
  encodeNamespace,
  encodeWith,
  incompleteAs,
  type Location,
  type TrackNamespace,
  type Writer,
} from "../coding";

export const MAX_MESSAGE_SIZE = 0xffff;

export const ParameterType = {
  ObjectDeliveryTimeout: 0x02,
  AuthorizationToken: 0x03,
  RendezvousTimeout: 0x04,
  SubgroupDeliveryTimeout: 0x06,
  Expires: 0x08,
  LargestObject: 0x09,
  FillTimeout: 0x0a,
  Forward: 0x10,
  SubscriberPriority: 0x20,
  SubscriptionFilter: 0x21,
  GroupOrder: 0x22,
  NewGroupRequest: 0x32,
  TrackNamespacePrefix: 0x34,
} as const;

export const GroupOrder = { Ascending: 1, Descending: 2 } as const;
export type GroupOrder = (typeof GroupOrder)[keyof typeof GroupOrder];

/** The Token structure; it fills its length-prefixed value, so it has no length of its own. */
export type Token =
  | { aliasType: "delete"; tokenAlias: number }
  | { aliasType: "register"; tokenAlias: number; tokenType: number; tokenValue: Uint8Array }
  | { aliasType: "use-alias"; tokenAlias: number }
  | { aliasType: "use-value"; tokenType: number; tokenValue: Uint8Array };

const ALIAS_CODES = { delete: 0, register: 1, "use-alias": 2, "use-value": 3 } as const;

export function decodeToken(r: Reader): Token {
  const malformed = () => DecodeError.kvpFormat(ParameterType.AuthorizationToken);
  const read = <T>(f: () => T): T => incompleteAs(f, malformed);
  const aliasType = read(() => r.varint());
  let token: Token;
  switch (aliasType) {
    case 0:
      token = { aliasType: "delete", tokenAlias: read(() => r.varint()) };
      break;
    case 2:
      token = { aliasType: "use-alias", tokenAlias: read(() => r.varint()) };
      break;
    case 1:
      token = {
        aliasType: "register",
        tokenAlias: read(() => r.varint()),
        tokenType: read(() => r.varint()),
        tokenValue: r.rest(),
      };
      break;
    case 3:
      token = { aliasType: "use-value", tokenType: read(() => r.varint()), tokenValue: r.rest() };
      break;
    default:
      throw malformed();
  }
  if (r.hasRemaining()) throw malformed();
  return token;
}

export function encodeToken(w: Writer, t: Token): void {
  w.varint(ALIAS_CODES[t.aliasType]);
  switch (t.aliasType) {
    case "delete":
    case "use-alias":
      w.varint(t.tokenAlias);
      break;
    case "register":
      w.varint(t.tokenAlias).varint(t.tokenType).bytes(t.tokenValue);
      break;
    case "use-value":
      w.varint(t.tokenType).bytes(t.tokenValue);
      break;
  }
}

export type SubscriptionFilter =
  | { type: "next-group-start" }
  | { type: "largest-object" }
  | { type: "absolute-start"; start: Location }
  | { type: "absolute-range"; start: Location; endGroupDelta: number };

const FILTER_CODES = { "next-group-start": 1, "largest-object": 2, "absolute-start": 3, "absolute-range": 4 } as const;

export function decodeFilter(r: Reader): SubscriptionFilter {
  switch (r.varint()) {
    case 1:
      return { type: "next-group-start" };
    case 2:
      return { type: "largest-object" };
    case 3:
      return { type: "absolute-start", start: decodeLocation(r) };
    case 4:
      return { type: "absolute-range", start: decodeLocation(r), endGroupDelta: r.varint() };
    default:
      throw DecodeError.invalid("subscription filter type");
  }
}

export function encodeFilter(w: Writer, f: SubscriptionFilter): void {
  w.varint(FILTER_CODES[f.type]);
  if (f.type === "absolute-start" || f.type === "absolute-range") encodeLocation(w, f.start);
  if (f.type === "absolute-range") w.varint(f.endGroupDelta);
}

/** One field per draft-18 parameter; encoding writes the present ones in ascending type order. */
export interface Parameters {
  objectDeliveryTimeout?: number;
  authorizationTokens?: Token[];
  rendezvousTimeout?: number;
  subgroupDeliveryTimeout?: number;
  expires?: number;
  largestObject?: Location;
  fillTimeout?: number;
  forward?: boolean;
  subscriberPriority?: number;
  subscriptionFilter?: SubscriptionFilter;
  groupOrder?: GroupOrder;
  newGroupRequest?: number;
  trackNamespacePrefix?: TrackNamespace;
}

/** Where a parameter block appears; decides which types are allowed (mirrors `ParameterScope`). */
export type ParameterScope =
  | "subscribe"
  | "subscribe-ok"
  | "publish"
  | "publish-ok"
  | "fetch"
  | "fetch-ok"
  | "track-status"
  | "track-status-ok"
  | "publish-namespace"
  | "subscribe-namespace"
  | "subscribe-tracks"
  | "request-update"
  | "request-ok";

const P = ParameterType;
const PUBLISH_OK_PARAMETERS = [
  P.ObjectDeliveryTimeout,
  P.SubgroupDeliveryTimeout,
  P.Expires,
  P.Forward,
  P.SubscriberPriority,
  P.SubscriptionFilter,
  P.NewGroupRequest,
  P.GroupOrder,
];
const ALLOWED: Record<ParameterScope, readonly number[]> = {
  subscribe: [
    P.ObjectDeliveryTimeout,
    P.SubgroupDeliveryTimeout,
    P.AuthorizationToken,
    P.RendezvousTimeout,
    P.Forward,
    P.SubscriberPriority,
    P.SubscriptionFilter,
    P.NewGroupRequest,
    P.GroupOrder,
  ],
  "subscribe-ok": [P.Expires, P.LargestObject],
  publish: [P.AuthorizationToken, P.Expires, P.LargestObject, P.Forward],
  "publish-ok": PUBLISH_OK_PARAMETERS,
  fetch: [P.AuthorizationToken, P.FillTimeout, P.SubscriberPriority, P.GroupOrder],
  "fetch-ok": [],
  "track-status": [P.AuthorizationToken],
  "track-status-ok": [P.LargestObject],
  "publish-namespace": [P.AuthorizationToken],
  "subscribe-namespace": [P.AuthorizationToken],
  "subscribe-tracks": [P.AuthorizationToken, P.Forward],
  // The codec cannot see what an update targets: the union of every target.
  "request-update": [
    P.ObjectDeliveryTimeout,
    P.SubgroupDeliveryTimeout,
    P.AuthorizationToken,
    P.Forward,
    P.SubscriberPriority,
    P.SubscriptionFilter,
    P.NewGroupRequest,
    P.TrackNamespacePrefix,
  ],
  // PUBLISH_OK ∪ REQUEST_UPDATE_OK ∪ TRACK_STATUS_OK.
  "request-ok": [...PUBLISH_OK_PARAMETERS, P.LargestObject],
};

export function decodeParameters(r: Reader, scope: ParameterScope): Parameters {
  const count = r.varint("parameter count");
  const params: Parameters = {};
  let ty = 0;
  for (let index = 0; index < count; index++) {
    const delta = r.varint("parameter type");
    ty += delta;
    if (index > 0 && delta === 0 && ty !== P.AuthorizationToken) {
      throw new DecodeError("duplicate-parameter", `duplicate parameter 0x${ty.toString(16)}`);
    }
    if (!ALLOWED[scope].includes(ty)) {
      throw new DecodeError("unknown-parameter", `unknown or disallowed parameter 0x${ty.toString(16)}`);
    }
    const t = ty;
    switch (t) {
      case P.ObjectDeliveryTimeout:
        params.objectDeliveryTimeout = r.varint();
        break;
      case P.AuthorizationToken:
        (params.authorizationTokens ??= []).push(decodeToken(r.sub(lengthOf(r))));
        break;
      case P.RendezvousTimeout:
        params.rendezvousTimeout = r.varint();
        break;
      case P.SubgroupDeliveryTimeout:
        params.subgroupDeliveryTimeout = r.varint();
        break;
      case P.Expires:
        params.expires = r.varint();
        break;
      case P.LargestObject:
        params.largestObject = decodeLocation(r);
        break;
      case P.FillTimeout:
        params.fillTimeout = r.varint();
        break;
      case P.Forward:
        params.forward = r.bool("FORWARD must be 0 or 1");
        break;
      case P.SubscriberPriority:
        params.subscriberPriority = r.u8();
        break;
      case P.SubscriptionFilter: {
        const value = r.sub(lengthOf(r));
        params.subscriptionFilter = incompleteAs(() => decodeFilter(value), () => DecodeError.kvpFormat(t));
        if (value.hasRemaining()) throw DecodeError.kvpFormat(t);
        break;
      }
      case P.GroupOrder: {
        const code = r.u8();
        if (code !== 1 && code !== 2) throw DecodeError.invalid("GROUP_ORDER must be 1 or 2");
        params.groupOrder = code;
        break;
      }
      case P.NewGroupRequest:
        params.newGroupRequest = r.varint();
        break;
      case P.TrackNamespacePrefix:
        params.trackNamespacePrefix = decodeNamespace(r);
        break;
    }
  }
  return params;
}

function lengthOf(r: Reader): number {
  const len = r.varint("parameter value length");
  if (len > MAX_MESSAGE_SIZE) throw DecodeError.tooLarge("parameter value", len, MAX_MESSAGE_SIZE);
  if (r.remaining < len) throw DecodeError.incomplete();
  return len;
}

export function encodeParameters(w: Writer, p: Parameters): void {
  const entries: [number, (w: Writer) => void][] = [];
  const add = (ty: number, f: (w: Writer) => void) => entries.push([ty, f]);
  if (p.objectDeliveryTimeout !== undefined) add(P.ObjectDeliveryTimeout, (w) => w.varint(p.objectDeliveryTimeout!));
  for (const token of p.authorizationTokens ?? []) {
    add(P.AuthorizationToken, (w) => w.lengthPrefixed(encodeWith((t) => encodeToken(t, token))));
  }
  if (p.rendezvousTimeout !== undefined) add(P.RendezvousTimeout, (w) => w.varint(p.rendezvousTimeout!));
  if (p.subgroupDeliveryTimeout !== undefined) {
    add(P.SubgroupDeliveryTimeout, (w) => w.varint(p.subgroupDeliveryTimeout!));
  }
  if (p.expires !== undefined) add(P.Expires, (w) => w.varint(p.expires!));
  if (p.largestObject !== undefined) add(P.LargestObject, (w) => encodeLocation(w, p.largestObject!));
  if (p.fillTimeout !== undefined) add(P.FillTimeout, (w) => w.varint(p.fillTimeout!));
  if (p.forward !== undefined) add(P.Forward, (w) => w.u8(p.forward ? 1 : 0));
  if (p.subscriberPriority !== undefined) add(P.SubscriberPriority, (w) => w.u8(p.subscriberPriority!));
  if (p.subscriptionFilter !== undefined) {
    const filter = p.subscriptionFilter;
    add(P.SubscriptionFilter, (w) => w.lengthPrefixed(encodeWith((f) => encodeFilter(f, filter))));
  }
  if (p.groupOrder !== undefined) add(P.GroupOrder, (w) => w.u8(p.groupOrder!));
  if (p.newGroupRequest !== undefined) add(P.NewGroupRequest, (w) => w.varint(p.newGroupRequest!));
  if (p.trackNamespacePrefix !== undefined) {
    add(P.TrackNamespacePrefix, (w) => encodeNamespace(w, p.trackNamespacePrefix!));
  }
  w.varint(entries.length);
  let previous = 0;
  for (const [ty, f] of entries) {
    w.varint(ty - previous);
    previous = ty;
    f(w);
  }
}
