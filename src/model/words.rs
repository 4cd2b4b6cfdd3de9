//! Enums written as words on the command line, in the API, the store's documentation and the
//! notification formats: one macro gives each its `ALL`, `name`, `from_name` and `Display`, so a
//! variant's word is written once.

/// `words!(Type { Variant => "word", ... })`.
macro_rules! words {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            pub fn from_name(text: &str) -> Option<$ty> {
                match text {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use words;
