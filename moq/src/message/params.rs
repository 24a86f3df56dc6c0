//! Message Parameters (draft-18 §10.2).
//!
//! ```text
//! Number of Parameters (vi64),
//! Message Parameter {
//!   Type Delta (vi64),
//!   Value (..)
//! } ...
//! ```
//!
//! The block is bounded by a count, not a length, because every parameter must be understood:
//! each type has its own value encoding (uint8, varint, Location, length-prefixed, Track
//! Namespace). Types are delta-encoded, so they are ascending on the wire. An unknown type, a
//! repeated type (other than AUTHORIZATION TOKEN) or a type outside the message's allowed set
//! is a PROTOCOL_VIOLATION.
//!
//! [`Parameters`] has one field per draft-18 parameter. Encoding writes the present fields in
//! ascending type order; it does not check [`ParameterScope`] (that is the sender's job).

use bytes::{Buf, BufMut, Bytes};

use crate::coding::{
    decode_length_prefixed, decode_u8, decode_varint, encode_length_prefixed, encode_varint, Decode,
    DecodeError, Encode, Location, TrackNamespace, Version,
};

use super::{GroupOrder, HopPath, SubscriptionFilter, Token, MAX_MESSAGE_SIZE};

/// The optional parameters of a control message, one field per draft-18 parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parameters {
    /// OBJECT_DELIVERY_TIMEOUT (0x02, varint): milliseconds.
    pub object_delivery_timeout: Option<u64>,
    /// AUTHORIZATION TOKEN (0x03, length-prefixed Token); may repeat.
    pub authorization_tokens: Vec<Token>,
    /// RENDEZVOUS_TIMEOUT (0x04, varint): milliseconds to wait for a publisher.
    pub rendezvous_timeout: Option<u64>,
    /// SUBGROUP_DELIVERY_TIMEOUT (0x06, varint): milliseconds.
    pub subgroup_delivery_timeout: Option<u64>,
    /// EXPIRES (0x08, varint): milliseconds until the sender ends the subscription; 0 = never.
    pub expires: Option<u64>,
    /// LARGEST_OBJECT (0x09, Location).
    pub largest_object: Option<Location>,
    /// FILL_TIMEOUT (0x0A, varint): milliseconds a relay may wait upstream during a FETCH.
    pub fill_timeout: Option<u64>,
    /// FORWARD (0x10, uint8 0 or 1): the Forwarding State.
    pub forward: Option<bool>,
    /// SUBSCRIBER_PRIORITY (0x20, uint8): lower is more important; 128 when absent.
    pub subscriber_priority: Option<u8>,
    /// SUBSCRIPTION_FILTER (0x21, length-prefixed Subscription Filter).
    pub subscription_filter: Option<SubscriptionFilter>,
    /// GROUP_ORDER (0x22, uint8 1 or 2).
    pub group_order: Option<GroupOrder>,
    /// NEW_GROUP_REQUEST (0x32, varint): the largest Group ID known to the subscriber, plus 1.
    pub new_group_request: Option<u64>,
    /// TRACK_NAMESPACE_PREFIX (0x34, Track Namespace): a new prefix for a namespace request.
    pub track_namespace_prefix: Option<TrackNamespace>,
    /// HOP_PATH (0xBA41, length-prefixed): Banyan's relay-path extension ([`HopPath`]); only
    /// sent to peers that declared it in SETUP.
    pub hop_path: Option<HopPath>,
}

/// Where a parameter block appears, which decides the parameters allowed in it (each
/// parameter's definition in §10.2 lists its messages).
///
/// REQUEST_OK and REQUEST_UPDATE answer or modify a request on the same stream, and the
/// codec cannot see which: it uses [`ParameterScope::RequestOk`] and
/// `RequestUpdate(UpdateTarget::Unknown)` (the union of the cases). A session that knows the
/// request re-checks with [`Parameters::check_scope`] and the precise scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterScope {
    /// SUBSCRIBE.
    Subscribe,
    /// SUBSCRIBE_OK.
    SubscribeOk,
    /// PUBLISH.
    Publish,
    /// PUBLISH_OK (a REQUEST_OK answering PUBLISH, or the 0x1E PUBLISH_OK type).
    PublishOk,
    /// FETCH.
    Fetch,
    /// FETCH_OK (no parameter lists it).
    FetchOk,
    /// TRACK_STATUS.
    TrackStatus,
    /// TRACK_STATUS_OK (a REQUEST_OK answering TRACK_STATUS).
    TrackStatusOk,
    /// PUBLISH_NAMESPACE.
    PublishNamespace,
    /// SUBSCRIBE_NAMESPACE.
    SubscribeNamespace,
    /// SUBSCRIBE_TRACKS.
    SubscribeTracks,
    /// A REQUEST_OK answering PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE or SUBSCRIBE_TRACKS
    /// (no parameter lists them).
    NamespaceOk,
    /// REQUEST_UPDATE of the given kind of request.
    RequestUpdate(UpdateTarget),
    /// REQUEST_UPDATE_OK (a REQUEST_OK answering REQUEST_UPDATE).
    RequestUpdateOk,
    /// A REQUEST_OK whose request is unknown: the union of PUBLISH_OK, REQUEST_UPDATE_OK and
    /// TRACK_STATUS_OK.
    RequestOk,
}

/// The kind of request a REQUEST_UPDATE modifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateTarget {
    /// A subscription (made by SUBSCRIBE or PUBLISH).
    Subscription,
    /// A FETCH.
    Fetch,
    /// A PUBLISH_NAMESPACE.
    PublishNamespace,
    /// A SUBSCRIBE_NAMESPACE.
    SubscribeNamespace,
    /// A SUBSCRIBE_TRACKS.
    SubscribeTracks,
    /// Not known (the codec's view): any of the above.
    Unknown,
}

impl Parameters {
    /// OBJECT_DELIVERY_TIMEOUT.
    pub const OBJECT_DELIVERY_TIMEOUT: u64 = 0x02;
    /// AUTHORIZATION TOKEN.
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    /// RENDEZVOUS_TIMEOUT.
    pub const RENDEZVOUS_TIMEOUT: u64 = 0x04;
    /// SUBGROUP_DELIVERY_TIMEOUT.
    pub const SUBGROUP_DELIVERY_TIMEOUT: u64 = 0x06;
    /// EXPIRES.
    pub const EXPIRES: u64 = 0x08;
    /// LARGEST_OBJECT.
    pub const LARGEST_OBJECT: u64 = 0x09;
    /// FILL_TIMEOUT.
    pub const FILL_TIMEOUT: u64 = 0x0A;
    /// FORWARD.
    pub const FORWARD: u64 = 0x10;
    /// SUBSCRIBER_PRIORITY.
    pub const SUBSCRIBER_PRIORITY: u64 = 0x20;
    /// SUBSCRIPTION_FILTER.
    pub const SUBSCRIPTION_FILTER: u64 = 0x21;
    /// GROUP_ORDER.
    pub const GROUP_ORDER: u64 = 0x22;
    /// NEW_GROUP_REQUEST.
    pub const NEW_GROUP_REQUEST: u64 = 0x32;
    /// TRACK_NAMESPACE_PREFIX.
    pub const TRACK_NAMESPACE_PREFIX: u64 = 0x34;
    /// HOP_PATH (Banyan extension, see [`super::hop_path`]).
    pub const HOP_PATH: u64 = 0xBA41;

    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no parameter is present.
    pub fn is_empty(&self) -> bool {
        self.types().next().is_none()
    }

    /// The number of parameters on the wire (each token counts once).
    pub fn count(&self) -> usize {
        self.types().count()
    }

    /// The types present, ascending, with one entry per AUTHORIZATION TOKEN.
    pub fn types(&self) -> impl Iterator<Item = u64> + '_ {
        let single = |present: bool, ty: u64| present.then_some(ty);
        [single(
            self.object_delivery_timeout.is_some(),
            Self::OBJECT_DELIVERY_TIMEOUT,
        )]
        .into_iter()
        .flatten()
        .chain(
            self.authorization_tokens
                .iter()
                .map(|_| Self::AUTHORIZATION_TOKEN),
        )
        .chain(
            [
                single(self.rendezvous_timeout.is_some(), Self::RENDEZVOUS_TIMEOUT),
                single(
                    self.subgroup_delivery_timeout.is_some(),
                    Self::SUBGROUP_DELIVERY_TIMEOUT,
                ),
                single(self.expires.is_some(), Self::EXPIRES),
                single(self.largest_object.is_some(), Self::LARGEST_OBJECT),
                single(self.fill_timeout.is_some(), Self::FILL_TIMEOUT),
                single(self.forward.is_some(), Self::FORWARD),
                single(self.subscriber_priority.is_some(), Self::SUBSCRIBER_PRIORITY),
                single(self.subscription_filter.is_some(), Self::SUBSCRIPTION_FILTER),
                single(self.group_order.is_some(), Self::GROUP_ORDER),
                single(self.new_group_request.is_some(), Self::NEW_GROUP_REQUEST),
                single(
                    self.track_namespace_prefix.is_some(),
                    Self::TRACK_NAMESPACE_PREFIX,
                ),
                single(self.hop_path.is_some(), Self::HOP_PATH),
            ]
            .into_iter()
            .flatten(),
        )
    }

    /// True when parameter type `ty` may appear in `scope` (draft-18 §10.2.x).
    pub fn allowed(ty: u64, scope: ParameterScope) -> bool {
        use ParameterScope as S;
        use UpdateTarget as U;
        match scope {
            // The codec's unions.
            S::RequestOk => [S::PublishOk, S::RequestUpdateOk, S::TrackStatusOk]
                .into_iter()
                .any(|s| Self::allowed(ty, s)),
            S::RequestUpdate(U::Unknown) => [
                U::Subscription,
                U::Fetch,
                U::PublishNamespace,
                U::SubscribeNamespace,
                U::SubscribeTracks,
            ]
            .into_iter()
            .any(|t| Self::allowed(ty, S::RequestUpdate(t))),
            _ => match ty {
                Self::OBJECT_DELIVERY_TIMEOUT | Self::SUBGROUP_DELIVERY_TIMEOUT => {
                    matches!(scope, S::PublishOk | S::Subscribe | S::RequestUpdate(_))
                }
                Self::AUTHORIZATION_TOKEN => matches!(
                    scope,
                    S::Publish
                        | S::Subscribe
                        | S::RequestUpdate(_)
                        | S::SubscribeNamespace
                        | S::SubscribeTracks
                        | S::PublishNamespace
                        | S::TrackStatus
                        | S::Fetch
                ),
                Self::RENDEZVOUS_TIMEOUT => matches!(scope, S::Subscribe),
                Self::EXPIRES => matches!(
                    scope,
                    S::SubscribeOk | S::Publish | S::PublishOk | S::RequestUpdateOk
                ),
                Self::LARGEST_OBJECT => {
                    matches!(
                        scope,
                        S::SubscribeOk | S::Publish | S::RequestUpdateOk | S::TrackStatusOk
                    )
                }
                Self::FILL_TIMEOUT => matches!(scope, S::Fetch),
                Self::FORWARD => matches!(
                    scope,
                    S::Subscribe
                        | S::RequestUpdate(U::Subscription)
                        | S::Publish
                        | S::PublishOk
                        | S::SubscribeTracks
                ),
                Self::SUBSCRIBER_PRIORITY => matches!(
                    scope,
                    S::Subscribe | S::Fetch | S::RequestUpdate(U::Subscription | U::Fetch) | S::PublishOk
                ),
                Self::SUBSCRIPTION_FILTER | Self::NEW_GROUP_REQUEST => {
                    matches!(
                        scope,
                        S::Subscribe | S::PublishOk | S::RequestUpdate(U::Subscription)
                    )
                }
                Self::GROUP_ORDER => matches!(scope, S::Subscribe | S::PublishOk | S::Fetch),
                Self::TRACK_NAMESPACE_PREFIX => {
                    matches!(
                        scope,
                        S::RequestUpdate(U::SubscribeNamespace | U::SubscribeTracks)
                    )
                }
                Self::HOP_PATH => matches!(
                    scope,
                    S::Subscribe | S::Fetch | S::TrackStatus | S::SubscribeNamespace | S::SubscribeTracks
                ),
                _ => false,
            },
        }
    }

    /// Check every present parameter against `scope`; the first that is not allowed is a
    /// [`DecodeError::UnknownParameter`] (PROTOCOL_VIOLATION).
    pub fn check_scope(&self, scope: ParameterScope) -> Result<(), DecodeError> {
        match self.types().find(|ty| !Self::allowed(*ty, scope)) {
            Some(ty) => Err(DecodeError::UnknownParameter(ty)),
            None => Ok(()),
        }
    }

    /// Decode a parameter block and check it against `scope`.
    pub fn decode_scoped<B: Buf>(
        buf: &mut B,
        version: Version,
        scope: ParameterScope,
    ) -> Result<Self, DecodeError> {
        let params = Self::decode(buf, version)?;
        params.check_scope(scope)?;
        Ok(params)
    }

    /// The encoded size in bytes (count included).
    pub fn encoded_len(&self, version: Version) -> usize {
        let mut buf = Vec::new();
        self.encode(&mut buf, version);
        buf.len()
    }
}

impl Decode for Parameters {
    /// Decode a parameter block: any defined type is accepted here (use
    /// [`Parameters::decode_scoped`] to also check the message's allowed set). Unknown types,
    /// duplicates and out-of-range values are errors; a value that does not match its type's
    /// encoding inside a length-prefixed value is [`DecodeError::KeyValueFormat`].
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let count = decode_varint(buf)?;
        let mut params = Parameters::default();
        let mut ty = 0u64;
        for index in 0..count {
            let delta = decode_varint(buf)?;
            ty = ty
                .checked_add(delta)
                .ok_or(DecodeError::Invalid("parameter type overflows"))?;
            if index > 0 && delta == 0 && ty != Self::AUTHORIZATION_TOKEN {
                return Err(DecodeError::DuplicateParameter(ty));
            }
            match ty {
                Self::OBJECT_DELIVERY_TIMEOUT => params.object_delivery_timeout = Some(decode_varint(buf)?),
                Self::AUTHORIZATION_TOKEN => {
                    let mut value = length_prefixed(buf)?;
                    params
                        .authorization_tokens
                        .push(Token::decode(&mut value, version)?);
                }
                Self::RENDEZVOUS_TIMEOUT => params.rendezvous_timeout = Some(decode_varint(buf)?),
                Self::SUBGROUP_DELIVERY_TIMEOUT => {
                    params.subgroup_delivery_timeout = Some(decode_varint(buf)?)
                }
                Self::EXPIRES => params.expires = Some(decode_varint(buf)?),
                Self::LARGEST_OBJECT => params.largest_object = Some(Location::decode(buf, version)?),
                Self::FILL_TIMEOUT => params.fill_timeout = Some(decode_varint(buf)?),
                Self::FORWARD => {
                    params.forward = Some(match decode_u8(buf)? {
                        0 => false,
                        1 => true,
                        _ => return Err(DecodeError::Invalid("FORWARD must be 0 or 1")),
                    })
                }
                Self::SUBSCRIBER_PRIORITY => params.subscriber_priority = Some(decode_u8(buf)?),
                Self::SUBSCRIPTION_FILTER => {
                    let mut value = length_prefixed(buf)?;
                    let filter = SubscriptionFilter::decode(&mut value, version).map_err(|e| match e {
                        DecodeError::Incomplete => DecodeError::KeyValueFormat(ty),
                        other => other,
                    })?;
                    if value.has_remaining() {
                        return Err(DecodeError::KeyValueFormat(ty));
                    }
                    params.subscription_filter = Some(filter);
                }
                Self::GROUP_ORDER => {
                    params.group_order = Some(
                        GroupOrder::from_code(decode_u8(buf)?.into())
                            .ok_or(DecodeError::Invalid("GROUP_ORDER must be 1 or 2"))?,
                    )
                }
                Self::NEW_GROUP_REQUEST => params.new_group_request = Some(decode_varint(buf)?),
                Self::TRACK_NAMESPACE_PREFIX => {
                    params.track_namespace_prefix = Some(TrackNamespace::decode(buf, version)?)
                }
                Self::HOP_PATH => {
                    let mut value = length_prefixed(buf)?;
                    params.hop_path = Some(HopPath::decode_value(&mut value, ty)?);
                }
                other => return Err(DecodeError::UnknownParameter(other)),
            }
        }
        Ok(params)
    }
}

impl Encode for Parameters {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.count() as u64, buf);
        let mut previous = 0u64;
        let mut put_type = |buf: &mut B, ty: u64| {
            encode_varint(ty - previous, buf);
            previous = ty;
        };
        if let Some(v) = self.object_delivery_timeout {
            put_type(buf, Self::OBJECT_DELIVERY_TIMEOUT);
            encode_varint(v, buf);
        }
        for token in &self.authorization_tokens {
            put_type(buf, Self::AUTHORIZATION_TOKEN);
            encode_varint(token.encoded_len() as u64, buf);
            token.encode(buf, version);
        }
        if let Some(v) = self.rendezvous_timeout {
            put_type(buf, Self::RENDEZVOUS_TIMEOUT);
            encode_varint(v, buf);
        }
        if let Some(v) = self.subgroup_delivery_timeout {
            put_type(buf, Self::SUBGROUP_DELIVERY_TIMEOUT);
            encode_varint(v, buf);
        }
        if let Some(v) = self.expires {
            put_type(buf, Self::EXPIRES);
            encode_varint(v, buf);
        }
        if let Some(v) = self.largest_object {
            put_type(buf, Self::LARGEST_OBJECT);
            v.encode(buf, version);
        }
        if let Some(v) = self.fill_timeout {
            put_type(buf, Self::FILL_TIMEOUT);
            encode_varint(v, buf);
        }
        if let Some(v) = self.forward {
            put_type(buf, Self::FORWARD);
            buf.put_u8(u8::from(v));
        }
        if let Some(v) = self.subscriber_priority {
            put_type(buf, Self::SUBSCRIBER_PRIORITY);
            buf.put_u8(v);
        }
        if let Some(v) = &self.subscription_filter {
            put_type(buf, Self::SUBSCRIPTION_FILTER);
            encode_length_prefixed(&v.to_bytes(version), buf);
        }
        if let Some(v) = self.group_order {
            put_type(buf, Self::GROUP_ORDER);
            buf.put_u8(v.code());
        }
        if let Some(v) = self.new_group_request {
            put_type(buf, Self::NEW_GROUP_REQUEST);
            encode_varint(v, buf);
        }
        if let Some(v) = &self.track_namespace_prefix {
            put_type(buf, Self::TRACK_NAMESPACE_PREFIX);
            v.encode(buf, version);
        }
        if let Some(v) = &self.hop_path {
            put_type(buf, Self::HOP_PATH);
            encode_varint(v.encoded_len() as u64, buf);
            v.encode_value(buf);
        }
    }
}

/// Read a length-prefixed parameter value (bounded by the largest control message).
fn length_prefixed<B: Buf>(buf: &mut B) -> Result<Bytes, DecodeError> {
    decode_length_prefixed(buf, "parameter value", MAX_MESSAGE_SIZE)
}
