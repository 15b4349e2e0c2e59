//! The domain error: what went wrong, in a sentence fit for the user, apart from the causes
//! that go to the log.

use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Values the user typed are wrong; the form is shown again with each message next to
    /// its field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The thing asked for does not exist (or the user may not know it exists).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    Throttled(String),
    /// The server has too much of this work in hand right now; try again in a few seconds.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// Whether this is a form's problem with any of `fields`.
    pub fn concerns(&self, fields: &[&str]) -> bool {
        matches!(self, Error::Invalid(list) if list.iter().any(|e| fields.contains(&e.field)))
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Invalid(vec![e])
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(StoreError::Sqlite(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Gathers the problems of every field of a form, so that it reports them all at once
/// rather than one per try. A failure that is not about a field (the database) wins.
#[derive(Default)]
pub struct Problems {
    fields: Vec<FieldError>,
    other: Option<Error>,
}

impl Problems {
    /// The value if `r` holds one; otherwise its problem is kept for [`Problems::finish`].
    pub fn check<T, E: Into<Error>>(&mut self, r: std::result::Result<T, E>) -> Option<T> {
        match r.map_err(Into::into) {
            Ok(v) => Some(v),
            Err(Error::Invalid(list)) => {
                self.fields.extend(list);
                None
            }
            Err(e) => {
                self.other.get_or_insert(e);
                None
            }
        }
    }

    pub fn push(&mut self, e: FieldError) {
        self.fields.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.other.is_none()
    }

    /// `Ok` when nothing went wrong; otherwise every field's problem (or the other failure).
    pub fn finish(self) -> Result<()> {
        match (self.other, self.fields.is_empty()) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(()),
            (None, false) => Err(Error::Invalid(self.fields)),
        }
    }
}
