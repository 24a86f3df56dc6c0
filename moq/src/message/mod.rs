//! Control messages (draft-18 §9): one file per message, named as the spec names it.
