//! Values checked once at the edge. Once parsed, a value is safe to put into SQL, a file on a
//! host or a command line; the rest of the code never sees an unchecked string.

mod macros {
    /// Implements Serialize/Deserialize through `Display`/`parse`, so a value read from JSON is
    /// checked exactly like one typed into a form.
    macro_rules! via_string {
        ($t:ty) => {
            impl serde::Serialize for $t {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_str(self)
                }
            }
            impl<'de> serde::Deserialize<'de> for $t {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let s = <String as serde::Deserialize>::deserialize(d)?;
                    <$t>::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
                }
            }
            impl std::str::FromStr for $t {
                type Err = $crate::domain::FieldError;
                fn from_str(s: &str) -> Result<Self, $crate::domain::FieldError> {
                    <$t>::parse(s)
                }
            }
        };
    }

    pub(crate) use via_string;
}
pub(crate) use macros::via_string;

mod account;
mod host;
/// Random tokens for links and cookies, and the hashes stored in their place.
pub mod token;

pub use account::*;
pub use host::*;

/// A size as people read it, in pages, mails and events: 1.4 GB, 320 KB.
pub fn size_text(n: i64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} KB", n / 1e3)
    } else {
        format!("{n} bytes")
    }
}
