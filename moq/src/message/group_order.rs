//! Group Order (draft-18 §10.2.8, GROUP_ORDER parameter): how Objects from different groups are
//! prioritised in a subscription, or ordered in a FETCH response.

/// Ascending (0x1) or Descending (0x2); any other value is a protocol violation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GroupOrder {
    /// Lower Group IDs first (0x1). The default for FETCH.
    #[default]
    Ascending,
    /// Higher Group IDs first (0x2).
    Descending,
}

impl GroupOrder {
    /// The code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            GroupOrder::Ascending => 0x1,
            GroupOrder::Descending => 0x2,
        }
    }

    /// The group order for a code, if it is 1 or 2.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x1 => Some(GroupOrder::Ascending),
            0x2 => Some(GroupOrder::Descending),
            _ => None,
        }
    }
}
