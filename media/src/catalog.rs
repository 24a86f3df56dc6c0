//! The MSF catalog (draft-ietf-moq-msf §"Catalog"): a JSON document on the `catalog` track
//! describing every media track of a broadcast.
//!
//! Field names follow the draft exactly (camelCase). Fields this crate does not model are kept
//! in `extra` maps and written back unchanged, so a catalog round-trips without loss; parsers
//! ignore what they do not understand, as the draft requires.
//!
//! Decoder configuration (the WebCodecs `description`, e.g. avcC) travels the way MSF defines
//! for initialization data: an `initDataList` entry of type `inline` holding the bytes in
//! base64, referenced by the track's `initRef`. See [`Catalog::init_data`].

use base64::Engine;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The track name MSF reserves for the top-level catalog.
pub const CATALOG_TRACK: &str = "catalog";
/// The MSF version this crate writes.
pub const MSF_VERSION: &str = "draft-01";
/// The custom track field Banyan sets on tracks produced by a synthetic source (their payload
/// is filler, not decodable media).
pub const SYNTHETIC_FIELD: &str = "banyan.synthetic";

/// A catalog object: an independent catalog or a delta update.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// The MSF version (`"draft-XX"`); required in independent catalogs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Wall-clock milliseconds since the Unix epoch when this catalog was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<u64>,
    /// The broadcast is complete (only ever `true`; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
    /// The tracks (absent in delta updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<Track>>,
    /// Tracks the subscriber may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_tracks: Option<Vec<Track>>,
    /// Present when this object is a delta update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_update: Option<Vec<DeltaOperation>>,
    /// Initialization data referenced by tracks' `initRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_data_list: Option<Vec<InitData>>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One track object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Track {
    /// The track's namespace (inherits the catalog's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The track name (unique per namespace).
    #[serde(default)]
    pub name: String,
    /// Payload encapsulation: `loc`, `mediatimeline`, `eventtimeline`, `catalog`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packaging: Option<String>,
    /// Whether new objects will be added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_live: Option<bool>,
    /// Target latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_latency: Option<u64>,
    /// `video`, `audio`, `caption`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A human-readable label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Tracks rendered together share a render group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_group: Option<u64>,
    /// Alternates of one another share an alternate group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_group: Option<u64>,
    /// The `id` of this track's entry in the catalog's `initDataList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_ref: Option<String>,
    /// Tracks this one depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<Vec<String>>,
    /// Temporal layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_id: Option<u64>,
    /// Spatial layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_id: Option<u64>,
    /// WebCodecs codec string, e.g. `avc1.640028`, `av01.0.08M.08`, `opus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Frames per second.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "number_as_written"
    )]
    pub framerate: Option<f64>,
    /// Time units per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timescale: Option<u64>,
    /// Maximum bitrate, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Average bitrate, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_bitrate: Option<u64>,
    /// Longest time between random access points, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gop_duration: Option<u64>,
    /// Longest MoQT group, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_group_duration: Option<u64>,
    /// Encoded width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Encoded height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Audio samples per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplerate: Option<u32>,
    /// Audio channel configuration, e.g. `"2"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_config: Option<String>,
    /// Intended display width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_width: Option<u32>,
    /// Intended display height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_height: Option<u32>,
    /// Dominant language (BCP 47).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Parent track (clone/update operations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_name: Option<String>,
    /// Parent namespace (clone/update operations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_namespace: Option<String>,
    /// Duration in milliseconds (not live tracks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_duration: Option<u64>,
    /// Fields this crate does not model (buffers, authInfo, custom fields, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One operation of a delta update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaOperation {
    /// `add`, `remove`, `clone` or `update`.
    pub op: String,
    /// The tracks the operation applies to.
    pub tracks: Vec<Track>,
}

/// One entry of the Initialization Data List.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitData {
    /// Referenced by tracks' `initRef`.
    pub id: String,
    /// `inline` (base64 data), `track-property` or `object-property`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload as defined by `type`.
    pub data: String,
}

/// Why a catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not valid catalog JSON.
    #[error("catalog is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An MSF version this crate does not understand (the draft forbids parsing it).
    #[error("catalog version {0:?} is not supported")]
    Version(String),
    /// An independent catalog without the required `version`.
    #[error("catalog has no version")]
    NoVersion,
    /// Inline init data that is not base64.
    #[error("initDataList entry {0:?} is not valid base64")]
    InitData(String),
}

impl Catalog {
    /// An independent live catalog of `tracks`, stamped now.
    pub fn live(tracks: Vec<Track>) -> Self {
        Self {
            version: Some(MSF_VERSION.to_string()),
            generated_at: Some(crate::loc::unix_micros() / 1000),
            tracks: Some(tracks),
            ..Default::default()
        }
    }

    /// The catalog that ends a live broadcast: complete, with no tracks.
    pub fn complete() -> Self {
        Self {
            version: Some(MSF_VERSION.to_string()),
            generated_at: Some(crate::loc::unix_micros() / 1000),
            is_complete: Some(true),
            tracks: Some(Vec::new()),
            ..Default::default()
        }
    }

    /// Parse a catalog object. Independent catalogs must carry a version this crate knows
    /// (`draft-XX`, or `1`, which one of the draft's examples uses); delta updates carry none.
    pub fn parse(json: &[u8]) -> Result<Self, CatalogError> {
        let catalog: Catalog = serde_json::from_slice(json)?;
        match (&catalog.version, &catalog.delta_update) {
            (Some(v), _) if !(v.starts_with("draft-") || v == "1") => Err(CatalogError::Version(v.clone())),
            (None, None) => Err(CatalogError::NoVersion),
            _ => Ok(catalog),
        }
    }

    /// The catalog as compact JSON (what goes in the object payload).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether this object is a delta update.
    pub fn is_delta(&self) -> bool {
        self.delta_update.is_some()
    }

    /// The tracks (empty for a delta update).
    pub fn tracks(&self) -> &[Track] {
        self.tracks.as_deref().unwrap_or_default()
    }

    /// The decoded inline initialization data `track` refers to, if any.
    pub fn init_data(&self, track: &Track) -> Result<Option<Vec<u8>>, CatalogError> {
        let Some(id) = &track.init_ref else {
            return Ok(None);
        };
        let Some(entry) = self
            .init_data_list
            .iter()
            .flatten()
            .find(|e| &e.id == id && e.kind == "inline")
        else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(entry.data.as_bytes())
            .map(Some)
            .map_err(|_| CatalogError::InitData(entry.id.clone()))
    }

    /// Attach `data` to `track` as inline init data with id `<track name>-init`.
    pub fn set_init_data(&mut self, track_index: usize, data: &[u8]) {
        let Some(track) = self.tracks.as_mut().and_then(|t| t.get_mut(track_index)) else {
            return;
        };
        let id = format!("{}-init", track.name);
        track.init_ref = Some(id.clone());
        let list = self.init_data_list.get_or_insert_with(Vec::new);
        list.retain(|e| e.id != id);
        list.push(InitData {
            id,
            kind: "inline".to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(data),
        });
    }
}

impl Track {
    /// Whether a Banyan synthetic source produced this track.
    pub fn is_synthetic(&self) -> bool {
        self.extra.get(SYNTHETIC_FIELD) == Some(&Value::Bool(true))
    }

    /// Whether the track is LOC-packaged video or audio (by `role`, else by codec).
    pub fn media_kind(&self) -> Option<crate::loc::MediaKind> {
        use crate::loc::MediaKind;
        if self.packaging.as_deref() != Some("loc") {
            return None;
        }
        match self.role.as_deref() {
            Some("video") => Some(MediaKind::Video),
            Some("audio") => Some(MediaKind::Audio),
            _ => match self.codec.as_deref() {
                Some(c)
                    if ["avc", "hev", "hvc", "vp0", "av01"]
                        .iter()
                        .any(|p| c.starts_with(p)) =>
                {
                    Some(MediaKind::Video)
                }
                Some(c) if c.starts_with("opus") || c.starts_with("mp4a") => Some(MediaKind::Audio),
                _ => None,
            },
        }
    }
}

/// Write whole numbers without a fraction (`30`, not `30.0`), so catalogs round-trip as written.
fn number_as_written<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(*v as i64),
        Some(v) => s.serialize_f64(*v),
        None => s.serialize_none(),
    }
}
