//! The data plane (draft-18 §10): subgroup and fetch streams, objects, datagrams, padding.
