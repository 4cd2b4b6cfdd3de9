//! Newtype ids, so a computer id can never be passed where a policy id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A policy's id; the Base Policy is created first and so has id 1.
    PolicyId
);
id_type!(
    /// A computer's id, never reused after a delete.
    ComputerId
);
id_type!(
    /// An alert's id, never reused.
    AlertId
);
